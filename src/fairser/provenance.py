"""What made an output: external inputs fingerprinted by content, hub models pinned, and the
provenance line that every report and figure title carries.

DVC sees params as strings, so a folder path in params.yaml says nothing about the files inside
it. The `inputs` stage (always run, cheap) writes one small JSON per consumer into data/inputs:

- corpus.json: every `*.wav` directly in corpus.audio_dir and the metadata files of
  corpus.metadata_dir that the download stage reads, each by size and full SHA-256 of its content;
- upstream.json, speaker.json, pseudo.json: the model of features.upstream, speaker.model and
  idi.pseudo_model: a built-in name (fbank, resemblyzer, pitch), a local folder (every file by
  size and SHA-256) or a hub id with its revision resolved to a commit.

Content is hashed in full on every run: no (size, mtime) shortcut, which would miss an in-place
edit that keeps both. The cost on a CREMA-D-size folder is in docs/PERFORMANCE.md. Identical inputs
give byte-identical files (sorted keys, no times, no absolute paths that params did not name), so
DVC reruns only the stages whose fingerprint file changed.

A hub id's revision (features.revision, speaker.revision, idi.pseudo_revision) resolves without
the network when it can: a 40-hex commit is itself; a branch or tag (null = `main`) resolves to the
commit the local Hugging Face cache holds for it; only an uncached id asks the hub (one request,
short timeout), and offline (HF_HUB_OFFLINE=1) it is recorded as unresolved. Stages then load the
resolved commit, so the cache that made a result is exactly the one fingerprinted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import textwrap
import warnings
from pathlib import Path

from fairser.errors import InputError

# Built-in model names (no files of ours to fingerprint beyond the code DVC already tracks).
BUILTIN = {"features.upstream": "fbank", "speaker.model": "resemblyzer", "idi.pseudo_model": "pitch"}
# params key of each model -> params key of its hub revision, and the data/inputs file name.
MODEL_KEYS = {
    "features.upstream": ("features.revision", "upstream"),
    "speaker.model": ("speaker.revision", "speaker"),
    "idi.pseudo_model": ("idi.pseudo_revision", "pseudo"),
}
# A file every hub model of that consumer has, to tell whether the local cache holds the id.
MARKER_FILE = {"features.upstream": "config.json", "speaker.model": "hyperparams.yaml",
               "idi.pseudo_model": "config.json"}
EXAMPLE = {"features.upstream": "wavlm-base-plus", "speaker.model": "spkrec-ecapa-voxceleb",
           "idi.pseudo_model": "gender-classifier"}
COMMIT = re.compile(r"[0-9a-f]{40}")
HUB_TIMEOUT_S = 10
CAUSE_CHARS = 160  # a model-load error quotes at most this much of its cause, cut between words

# The paper's setup (PROTOCOL section 3; paper sections 3-4), for table1_vs_paper.md.
PAPER_SETUP = {
    "corpus": "CREMA-D, 91 actors, 7442 clips",
    "features.upstream": "microsoft/wavlm-base-plus",
    "speaker.model": "speechbrain/spkrec-ecapa-voxceleb",
    "idi.pseudo_model": "a hub gender classifier (its name is lost in the paper's OCR)",
}
CREMA_D_TOTAL = {"actors": 91, "clips": 7442}


# ----------------------------------------------------------------------------- hashing


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def digest_files(root: Path, names: list[str]) -> dict:
    """{files, bytes, sha256}: the SHA-256 over one line `name size sha256` per file, sorted by
    name, so any added, removed, renamed or edited file changes it."""
    lines, total = [], 0
    for name in sorted(names):
        path = root / name
        size = path.stat().st_size
        total += size
        lines.append(f"{name}\t{size}\t{sha256_file(path)}\n")
    return {"files": len(lines), "bytes": total,
            "sha256": hashlib.sha256("".join(lines).encode()).hexdigest()}


def folder_files(folder: Path) -> list[str]:
    """Every regular file under `folder` (following links), as sorted POSIX relative paths;
    hidden files and folders (.git, .cache) are left out."""
    out = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        out.append(rel.as_posix())
    return sorted(out)


# ----------------------------------------------------------------------------- model sources


def _looks_like_path(name: str) -> bool:
    """A hub id is `name` or `owner/name`; anything else that names no folder is a missing folder."""
    return (name.startswith(("/", "./", "../", "~")) or "\\" in name or name.count("/") > 1
            or name.endswith("/"))


def model_kind(key: str, name: str) -> str:
    """'builtin', 'folder' or 'hub'; a path-like name that is no folder is a one-line error."""
    if name == BUILTIN.get(key):
        return "builtin"
    if Path(name).expanduser().is_dir():
        return "folder"
    if Path(name).expanduser().exists():
        raise InputError(f"{key} '{name}': not a folder (a local model is a folder of its files)")
    if _looks_like_path(name):
        raise InputError(f"{key} '{name}': folder not found (a local model is a folder; a hub id "
                         f"is owner/name)")
    return "hub"


def check_revision(key: str, name: str, revision, kind: str) -> None:
    revkey = MODEL_KEYS[key][0]
    if revision is not None and kind != "hub":
        raise InputError(f"{revkey} is {revision!r} but {key} '{name}' is a {kind} model; a "
                         f"revision applies to hub ids only (set {revkey}=null)")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE set to a true value, read now (not at import)."""
    return any(os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit the local Hugging Face cache holds for `revision` (None = main), or None."""
    repo = _hub_cache() / f"models--{repo_id.replace('/', '--')}"
    rev = revision or "main"
    if COMMIT.fullmatch(rev):
        return rev if (repo / "snapshots" / rev).is_dir() else None
    ref = repo / "refs" / rev
    if ref.is_file():
        commit = ref.read_text().strip()
        if COMMIT.fullmatch(commit) and (repo / "snapshots" / commit).is_dir():
            return commit
    return None


def _shorten(text: str, n: int = CAUSE_CHARS) -> str:
    """`text` on one line, cut at the last space before `n` characters (never mid-word)."""
    text = " ".join(text.split())
    if len(text) <= n:
        return text
    cut = text.rfind(" ", 0, n)
    return text[:cut if cut > 0 else n].rstrip(" ,;:") + " …"


def model_load_error(key: str, name: str, err: BaseException | str, example: str | None = None) -> InputError:
    """The one line shown when a hub id or folder cannot be loaded: the key and the fix stay whole,
    only the quoted cause is shortened."""
    example = example or EXAMPLE.get(key, "model")
    cause = err if isinstance(err, str) else (
        f"{type(err).__name__}: {str(err).strip() or 'no message'}")
    return InputError(
        f"{key} '{name}' could not be loaded ({_shorten(cause)}); download it once where the network "
        f"is reachable (later runs need no network with HF_HUB_OFFLINE=1), or point the pipeline "
        f"at a local copy: -S {key}=/path/to/{example}")


def resolve_hub(key: str, repo_id: str, revision: str | None, *, ask_hub: bool = True) -> str | None:
    """The commit to load for a hub id: from the local cache, else (online, `ask_hub`) from one
    hub request. None when it cannot be known."""
    if revision is not None and COMMIT.fullmatch(revision):
        return revision  # a commit names its content, cached or not
    commit = cached_commit(repo_id, revision)
    if commit is not None or not ask_hub or hub_offline():
        return commit
    try:
        from huggingface_hub import HfApi

        return HfApi().model_info(repo_id, revision=revision, timeout=HUB_TIMEOUT_S).sha
    except Exception:  # unreachable hub or unknown id: the loader says which, in one line
        return None


def require_hub_model(key: str, repo_id: str, revision: str | None) -> str:
    """Fail fast, before any library's retries, unless the id can be loaded: the commit to load.

    Cached: its commit. Offline and uncached: a one-line error at once. Online and uncached: one
    hub request with a short timeout decides (unknown id, no network), else the commit to fetch.
    """
    commit = cached_commit(repo_id, revision)
    if commit is not None:
        return commit
    rev = f" at revision {revision}" if revision else ""
    if hub_offline():
        raise model_load_error(key, repo_id, f"not in the local Hugging Face cache{rev} and "
                                             f"HF_HUB_OFFLINE is set")
    try:
        from huggingface_hub import HfApi

        return HfApi().model_info(repo_id, revision=revision, timeout=HUB_TIMEOUT_S).sha
    except Exception as err:
        raise model_load_error(key, repo_id, err) from None


def quiet_hub_loading():
    """Silence what every HF load prints but nobody can act on: weight-loading progress bars and
    torch's deprecation warning about mismatched key_padding_mask / attn_mask types, raised inside
    transformers' WavLM/wav2vec2 attention (library code we do not control; outputs unaffected)."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=r".*key_padding_mask.*attn_mask.*",
                            category=UserWarning)
    warnings.filterwarnings("ignore", message=r".*key_padding_mask.*attn_mask.*",
                            category=DeprecationWarning)


# ----------------------------------------------------------------------------- fingerprints


def fingerprint_model(key: str, name: str, revision: str | None, *, ask_hub: bool = True) -> dict:
    """The content identity of one model param (see the module docstring)."""
    kind = model_kind(key, name)
    check_revision(key, name, revision, kind)
    out = {"param": key, "model": name, "kind": kind}
    if kind == "builtin":
        if name == "resemblyzer":  # its weights ship inside the wheel
            from importlib.metadata import version

            out["package"] = f"resemblyzer {version('resemblyzer')}"
    elif kind == "folder":
        folder = Path(name).expanduser()
        files = folder_files(folder)
        if not files:
            raise InputError(f"{key} '{name}': the folder is empty")
        out["content"] = {rel: {"bytes": (folder / rel).stat().st_size,
                                "sha256": sha256_file(folder / rel)} for rel in files}
        out["sha256"] = digest_files(folder, files)["sha256"]
    else:
        out["revision"] = revision
        out["resolved"] = resolve_hub(key, name, revision, ask_hub=ask_hub)
    return out


def fingerprint_corpus(corpus: dict) -> dict:
    """corpus.name and the content of corpus.audio_dir (its top-level *.wav) and corpus.metadata_dir
    (the files of fairser.corpus.METADATA): the files the download stage reads."""
    out = {"corpus": corpus["name"]}
    if corpus["name"] in ("emo-superb", "manifest"):
        return {**out, **_fingerprint_user_corpus(corpus)}
    from fairser.corpus import METADATA

    surrogate = corpus["name"] == "surrogate"  # generated: it reads no folder
    out["audio_dir"] = _folder_fingerprint(
        "audio_dir", None if surrogate else corpus.get("audio_dir"),
        lambda root: sorted(p.name for p in root.iterdir() if p.suffix.lower() == ".wav" and p.is_file()))
    # the metadata files the download stage reads (their absence is its error to give)
    out["metadata_dir"] = _folder_fingerprint(
        "metadata_dir", None if surrogate else corpus.get("metadata_dir"),
        lambda root: sorted(n for n in METADATA if (root / n).is_file()))
    return out


def _folder_fingerprint(key: str, folder, names_in) -> dict | None:
    """`corpus.<key>`'s fingerprint: None without a folder, else its path and the size and
    SHA-256 of the files `names_in(folder)` lists; a folder that does not exist is one line."""
    if folder is None:
        return None
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"corpus.{key} '{folder}': folder not found")
    return {"path": folder, **digest_files(root, names_in(root))}


def _fingerprint_user_corpus(corpus: dict) -> dict:
    """emo-superb / manifest: every audio file under corpus.audio_dir (subfolders too), the
    labels_consensus_*.csv and config.json of corpus.labels_dir (emo-superb), and the files
    corpus.manifest and corpus.speakers; absent ones (their absence is the download stage's error
    to give) are None."""
    from fairser.corpus import AUDIO_SUFFIXES

    out = {"metadata_dir": None}
    out["audio_dir"] = _folder_fingerprint(
        "audio_dir", corpus.get("audio_dir"),
        lambda root: [n for n in folder_files(root) if Path(n).suffix.lower() in AUDIO_SUFFIXES])
    out["labels_dir"] = _folder_fingerprint(
        "labels_dir", corpus.get("labels_dir") if corpus["name"] == "emo-superb" else None,
        lambda root: sorted(p.name for p in root.iterdir() if p.is_file() and (
            p.name == "config.json" or (p.name.startswith("labels_consensus_") and p.suffix == ".csv"))))
    for key in ("manifest", "speakers"):
        name = corpus.get(key) if key == "speakers" or corpus["name"] == "manifest" else None
        if name is None:
            out[key] = None
            continue
        path = Path(name).expanduser()
        if not path.is_file():
            raise InputError(f"corpus.{key} '{name}': file not found")
        out[key] = {"path": name, **digest_files(path.parent, [path.name])}
    return out


def write_inputs(out: str | Path, params: dict, *, ask_hub: bool = True) -> dict:
    """Stage `inputs`: data/inputs/{corpus,upstream,speaker,pseudo}.json. Returns them by name."""
    from fairser.io import atomic_dir

    docs = {"corpus": fingerprint_corpus(params["corpus"])}
    for key, (revkey, name) in MODEL_KEYS.items():
        section, field = key.split(".")
        rsection, rfield = revkey.split(".")
        docs[name] = fingerprint_model(key, params[section][field], params[rsection][rfield],
                                       ask_hub=ask_hub)
    with atomic_dir(out) as tmp:
        for name, doc in docs.items():
            (tmp / f"{name}.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return docs


def read_fingerprint(path: str | Path | None) -> dict | None:
    if path is None:
        return None
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (run the inputs stage first)") from None
    except json.JSONDecodeError:
        raise InputError(f"{path}: not JSON") from None


def load_revision(fingerprint: dict | None, revision: str | None) -> str | None:
    """The revision a stage loads: the commit the inputs stage resolved, else the param."""
    if fingerprint and fingerprint.get("kind") == "hub" and fingerprint.get("resolved"):
        return fingerprint["resolved"]
    return revision


def model_summary(fingerprint: dict) -> dict:
    """What a cache's info.json records of its model: name, kind, revision or content hash."""
    keep = ("model", "kind", "revision", "resolved", "sha256", "package")
    return {k: fingerprint[k] for k in keep if k in fingerprint}


def describe_model(summary: dict | None) -> str:
    """`microsoft/wavlm-base-plus@4c66d48`, `folder /m (sha256 1a2b3c4d)`, `fbank (built-in)`."""
    if not summary:
        return "unknown"
    name, kind = summary.get("model", "unknown"), summary.get("kind")
    if kind == "hub":
        commit = summary.get("resolved") or summary.get("revision")
        return f"{name}@{commit[:7]}" if commit else f"{name} (revision unresolved)"
    if kind == "folder":
        return f"folder {name} (sha256 {summary.get('sha256', '?')[:8]})"
    return f"{name} (built-in)" if kind == "builtin" else name


# ----------------------------------------------------------------------------- report lines


def coverage(corpus_info: dict) -> str:
    """`CREMA-D: 8 of 91 actors, 642 of 7442 clips` (a subset says so)."""
    name = {"crema-d": "CREMA-D", "surrogate": "surrogate"}.get(corpus_info.get("corpus"),
                                                                str(corpus_info.get("corpus")))
    if "clips" not in corpus_info or "actors" not in corpus_info:
        return f"{name} (coverage not recorded)"
    actors_total = corpus_info.get("actors", 0)
    actors_used = corpus_info.get("actors_used", actors_total)
    clips_total = corpus_info.get("clips", 0)
    clips_used = corpus_info.get("clips_used", clips_total - corpus_info.get("skipped", 0))
    # An imported corpus says who a speaker is (fairser.corpus.speaker_units).
    rule = (corpus_info.get("speaker_rule") or {}).get("description")
    rule = f" ({rule})" if rule else ""
    if actors_used == actors_total and clips_used == clips_total:
        return f"{name}: all {actors_total} actors, {clips_total} clips{rule}"
    subset = " (subset)" if actors_used < actors_total else ""
    return (f"{name}{subset}: {actors_used} of {actors_total} actors, {clips_used} of "
            f"{clips_total} clips{rule}")


def caption(*, corpus_info: dict, models: dict, preset: str, seed: int, seeds: int,
            width: int | None = None) -> str:
    """The provenance line of every title: corpus notice and coverage, the three models, the
    preset and the seeds. `width` wraps it onto several lines (figure titles)."""
    parts = [p for p in (corpus_info.get("notice"),) if p]
    parts.append(coverage(corpus_info))
    parts.append(f"upstream {describe_model(models.get('features.upstream'))}")
    parts.append(f"speaker {describe_model(models.get('speaker.model'))}")
    parts.append(f"pseudo {describe_model(models.get('idi.pseudo_model'))}")
    parts.append(f"preset {preset}, seed {seed}, {seeds} training seed{'s' if seeds != 1 else ''}")
    text = "; ".join(parts)
    return text if width is None else "\n".join(textwrap.wrap(text, width))


def paper_differences(*, corpus_info: dict, models: dict) -> list[str]:
    """One line per way this run's setup differs from the paper's (empty when none is known)."""
    out = []
    is_crema = corpus_info.get("corpus") == "crema-d"
    full = (is_crema and corpus_info.get("actors_used", corpus_info.get("actors")) == CREMA_D_TOTAL["actors"]
            and corpus_info.get("clips_used", corpus_info.get("clips")) == CREMA_D_TOTAL["clips"])
    if not full:
        out.append(f"corpus: ours {coverage(corpus_info)}; paper {PAPER_SETUP['corpus']}")
    for key, label in (("features.upstream", "upstream"), ("speaker.model", "speaker model")):
        summary = models.get(key) or {}
        if summary.get("model") != PAPER_SETUP[key] or summary.get("kind") != "hub":
            out.append(f"{label}: ours {describe_model(summary)}; paper {PAPER_SETUP[key]}")
    pseudo = models.get("idi.pseudo_model") or {}
    out.append(f"pseudo-label model: ours {describe_model(pseudo)}; paper "
               f"{PAPER_SETUP['idi.pseudo_model']}, so it may differ")
    return out


# ----------------------------------------------------------------------------- loading


def model_for_stage(key: str, name: str, revision: str | None, fingerprint: dict | None = None):
    """(revision to load, summary for info.json) of a stage's model: from the inputs stage's
    fingerprint when it names this model, else fingerprinted here (without asking the hub)."""
    if fingerprint is None or fingerprint.get("model") != name:
        fingerprint = fingerprint_model(key, name, revision, ask_hub=False)
    return load_revision(fingerprint, revision), model_summary(fingerprint)


def load_hf(key: str, name: str, revision: str | None, *classes):
    """`cls.from_pretrained(name, revision=..., trust_remote_code=False)` for each class, from a
    local folder or a hub id; a missing folder, an uncached id offline or an unknown one is a
    one-line error before transformers' retries start."""
    kind = model_kind(key, name)
    check_revision(key, name, revision, kind)
    if kind == "hub":
        revision = require_hub_model(key, name, revision)
    quiet_hub_loading()
    try:
        # trust_remote_code=False: never run Python shipped with a model (docs/REPRODUCIBILITY.md).
        return [cls.from_pretrained(name, revision=revision, trust_remote_code=False)
                for cls in classes]
    except Exception as err:  # hub/offline/format errors all mean: this id cannot be used here
        raise model_load_error(key, name, err) from None


def models_from_info(*, features=None, speaker=None, pseudo=None) -> dict:
    """{model param: model summary} from the caches' info.json files (a missing path: unknown)."""
    out = {}
    for key, path in (("features.upstream", features), ("speaker.model", speaker),
                      ("idi.pseudo_model", pseudo)):
        if path is None or not Path(path).is_file():
            continue
        try:
            model = json.loads(Path(path).read_text()).get("model")
        except (json.JSONDecodeError, AttributeError):
            raise InputError(f"{path}: not a JSON object") from None
        # Caches written before provenance was recorded hold the bare name, or none.
        if isinstance(model, dict):
            out[key] = model
        elif model is not None:
            out[key] = {"model": str(model), "kind": "unknown"}
    return out
