"""params.yaml: presets, validation, and resolution into plain values.

`preset` fills every key left `null` (offline: runs here with no network; paper: the paper's
corpus and models). Keys set explicitly in params.yaml or with `dvc exp run -S` win.
Validation runs before any stage does work, so bad input costs one clear line, not an hour:
the `params` stage (stages/params.py) runs it first of all, before DVC removes any output.

The file is read as YAML 1.2 with ruamel.yaml's safe loader, the reader DVC itself uses, so a
value means the same to DVC and to the stages (`1e-4` is a number to both; PyYAML's YAML 1.1
would read it as a string). Every key is checked against SCHEMA, one line per key.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fairser.errors import ParamsError
from fairser.method_sets import EXTENSIONS, GROUP_METHODS, METHODS  # noqa: F401 (re-exported)

PRESETS = {
    "offline": {
        "corpus.name": "surrogate",
        "features.upstream": "fbank",
        "speaker.model": "resemblyzer",
        "idi.pseudo_model": "pitch",
    },
    "paper": {
        "corpus.name": "crema-d",
        "features.upstream": "microsoft/wavlm-base-plus",
        "speaker.model": "speechbrain/spkrec-ecapa-voxceleb",
        # Our choice of hub gender classifier; the paper's footnote naming its model is lost in the OCR.
        "idi.pseudo_model": "alefiury/wav2vec2-large-xlsr-53-gender-recognition-librispeech",
        # Hub commits (docs/REPRODUCIBILITY.md, "Pinned models"): filled only while the model key
        # holds the preset's own model. No published commit of the gender classifier was found,
        # so it stays unpinned (its resolved commit is recorded in data/inputs/pseudo.json).
        "features.revision": "4c66d4806a428f2e922ccfa1a962776e232d487b",
        "speaker.revision": "0f99f2d0ebe89ac095bcc5903c4dd8f72b367286",
        "idi.pseudo_revision": None,
    },
}
# Each hub revision param and the model param it pins.
REVISION_OF = {"features.revision": "features.upstream", "speaker.revision": "speaker.model",
               "idi.pseudo_revision": "idi.pseudo_model"}

CORPORA = ("surrogate", "crema-d", "emo-superb", "manifest")
SPLIT_NAMES = ("train", "dev", "test")


# --- the schema -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """What one key accepts: `check(value)` is True for a good value, described by `expected`.

    `required=False`: the key may be absent (its reader has a default).
    """

    check: Callable[[Any], bool]
    expected: str
    required: bool = True

    def optional(self) -> "Rule":
        return Rule(self.check, self.expected, required=False)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    """A finite int or float (inf and nan are not numbers a parameter can take)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def integer(lo: int | None = None, hi: int | None = None, why: str = "") -> Rule:
    if lo is not None and hi is not None:
        expected = f"an integer from {lo} to {hi}"
    elif lo is not None:
        expected = f"an integer >= {lo}"
    else:
        expected = "an integer"
    return Rule(lambda x: _is_int(x) and (lo is None or x >= lo) and (hi is None or x <= hi),
                expected + why)


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False, why: str = "") -> Rule:
    """A finite number in the interval; bounds closed unless `lo_open` / `hi_open`."""
    def ok(x) -> bool:
        if not _is_number(x):
            return False
        if lo is not None and (x <= lo if lo_open else x < lo):
            return False
        return hi is None or (x < hi if hi_open else x <= hi)
    if lo is not None and hi is not None:
        expected = f"a finite number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        expected = f"a finite number {'>' if lo_open else '>='} {lo:g}"
    else:
        expected = "a finite number"
    return Rule(ok, expected + why)


def choice(*values) -> Rule:
    return Rule(lambda x: isinstance(x, str) and x in values, f"one of {', '.join(values)}")


def text(what: str = "a non-empty string") -> Rule:
    return Rule(lambda x: isinstance(x, str) and x != "", what)


def revision() -> Rule:
    """A hub revision: a commit hash, branch or tag (no white space)."""
    return Rule(lambda x: isinstance(x, str) and x != "" and not any(c.isspace() for c in x),
                "a hub revision (commit hash, branch or tag)")


def flag() -> Rule:
    return Rule(lambda x: isinstance(x, bool), "true or false")


def _bins(x) -> bool:
    """corpus.bins.<column>: {edges: increasing numbers, names: one name per bin}."""
    if not isinstance(x, dict) or set(x) != {"edges", "names"}:
        return False
    e, n = x["edges"], x["names"]
    return (isinstance(e, list) and isinstance(n, list) and len(n) >= 2 and len(e) == len(n) + 1
            and all(_is_number(v) for v in e) and all(b > a for a, b in zip(e, e[1:]))
            and all(isinstance(v, str) and v for v in n) and len(set(n)) == len(n))


def _speaker_rule(x) -> bool:
    """corpus.speaker_rule (fairser.corpus.speaker_units): a rule name or a regex that compiles."""
    if x in ("auto", "spkrid", "spkrid_gender"):
        return True
    if not (isinstance(x, str) and x.startswith("regex:") and len(x) > len("regex:")):
        return False
    try:
        re.compile(x[len("regex:"):])
    except re.error:
        return False
    return True


def _names(x, at_least: int = 1) -> bool:
    """A list of at least `at_least` distinct non-empty strings."""
    return (isinstance(x, list) and len(x) >= at_least and all(isinstance(v, str) and v.strip() for v in x)
            and len(set(x)) == len(x))


def or_null(rule: Rule) -> Rule:
    return Rule(lambda x: x is None or rule.check(x), f"null or {rule.expected}", rule.required)


def _k_list(x) -> bool:
    return (isinstance(x, list) and len(x) > 0 and all(_is_int(k) and k >= 2 for k in x)
            and len(set(x)) == len(x))


def subset(*values) -> Rule:
    """A list of distinct names from `values` (may be empty)."""
    return Rule(lambda x: isinstance(x, list) and all(isinstance(v, str) and v in values for v in x)
                and len(set(x)) == len(x), f"a list of distinct names from {', '.join(values)}")


def _one_or_list(x, ok: Callable[[Any], bool]) -> bool:
    """One value that passes `ok`, or a non-empty list of distinct such values."""
    if isinstance(x, list):
        return len(x) > 0 and all(ok(v) for v in x) and len(set(x)) == len(x)
    return ok(x)


MODEL = text("a model name, hub id or folder")
DEVICE = choice("auto", "cpu", "cuda")
FOLDER = or_null(text("a folder path"))
URL = text("a URL")

# Every key of params.yaml, in file order, after the preset has filled its nulls. `a.b.*` accepts
# any key under section a.b. To add a key: one line here (and the key in params.yaml).
SCHEMA: dict[str, Rule] = {
    "preset": choice(*PRESETS),
    "seed": integer(0),
    "corpus.name": choice(*CORPORA),
    "corpus.audio_dir": FOLDER,
    "corpus.metadata_dir": FOLDER,
    "corpus.labels_dir": FOLDER,
    "corpus.manifest": or_null(text("a .csv or .jsonl file")),
    "corpus.speakers": or_null(text("a CSV file of speaker demographics")),
    "corpus.renormalise": flag(),
    "corpus.speaker_rule": Rule(_speaker_rule, "auto, spkrid, spkrid_gender or regex:<pattern over FileName>"),
    "corpus.classes": or_null(Rule(lambda x: _names(x, 2), "a list of at least two distinct class names")),
    "corpus.min_clips_per_class": integer(1),
    "corpus.excluded.*": Rule(_names, "a list of values that mean unknown, e.g. [Unknown]"),
    "corpus.bins.*": Rule(_bins, "{edges: [increasing numbers], names: [one name per bin]}"),
    "corpus.urls.crema_d_raw": URL,
    "corpus.urls.crema_d_lfs": URL,
    "corpus.urls.emo_superb_raw": URL,
    "corpus.surrogate.n_actors": integer(10, why=" (5 folds need two actors of each sex per block)"),
    "corpus.surrogate.n_sentences": integer(1, 12, why=" (CREMA-D's sentences)"),
    "corpus.surrogate.seconds": number(0.5, 10, why=" seconds"),
    "split.bias": text("an attribute of the corpus (gender, ...) or none"),
    "split.ratio": number(1),
    "split.min_clips_per_class.train": integer(0),
    "split.min_clips_per_class.dev": integer(0),
    "split.min_clips_per_class.test": integer(0),
    "split.min_clips_per_group.train": integer(0),
    "split.min_clips_per_group.dev": integer(0),
    "split.min_clips_per_group.test": integer(0),
    "split.on_degenerate": choice("error", "warn"),
    "split.on_sparse_class": choice("auto", "error", "warn"),
    "features.upstream": MODEL,
    "features.batch_seconds": number(0, lo_open=True),
    "features.device": DEVICE,
    "features.revision": or_null(revision()),
    "speaker.model": MODEL,
    "speaker.device": DEVICE,
    "speaker.revision": or_null(revision()),
    "idi.pseudo_model": MODEL,
    "idi.pseudo_revision": or_null(revision()),
    "idi.truth": or_null(text("an attribute of the corpus")),
    "idi.pitch_threshold_hz": number(0, lo_open=True, why=" (Hz)"),
    "idi.k": integer(2),
    "idi.k_sweep": Rule(_k_list, "a non-empty list of distinct integers >= 2"),
    "train.epochs": integer(1),
    "train.seeds": integer(1),
    "train.batch_size": integer(1),
    # Adam's step is about lr per update; above 1 it only diverges.
    "train.lr": number(0, 1, lo_open=True),
    "train.hidden": integer(1),
    "train.target": choice("soft", "hard"),
    "train.device": DEVICE,
    # Which of issue 24's methods the run sets train (the rest: `dvc exp run -S`; README).
    "train.extensions": subset(*EXTENSIONS),
    "methods.gdro.eta": number(0, lo_open=True),
    "methods.gadro.eta": number(0, lo_open=True),
    "methods.gadro.adjustment": number(0),
    "methods.pgdro.eta": number(0, lo_open=True),
    "methods.lff.gce_q": number(0, 1, lo_open=True),
    "methods.lff.ema_alpha": number(0, 1, hi_open=True),
    "methods.disent.gce_q": number(0, 1, lo_open=True),
    "methods.disent.ema_alpha": number(0, 1, hi_open=True),
    "methods.disent.lambda_dis": number(0),
    "methods.disent.lambda_swap_b": number(0),
    "methods.disent.lambda_swap": number(0),
    "methods.disent.swap_after_epoch": integer(0),
    # JTT's grid (debias/jtt.py): a value or a list of values each; every pair is trained and
    # the best on dev macro-F1 is kept per (fold, seed).
    "methods.jtt.identification_epochs": Rule(  # and at most train.epochs (validate)
        lambda x: _one_or_list(x, lambda t: _is_int(t) and t >= 1),
        "an integer >= 1 or a non-empty list of distinct ones"),
    "methods.jtt.lambda_up": Rule(lambda x: _one_or_list(x, lambda v: _is_number(v) and v >= 1),
                                  "a finite number >= 1 or a non-empty list of distinct ones"),
    "methods.jtt.error_rule": choice("prob", "argmax"),
    "methods.george.eta": number(0, lo_open=True),
    "methods.george.max_k": integer(2),
    "methods.george.components": integer(1),
    "methods.george.n_init": integer(1),
    "methods.adv.lambda_max": number(0),
    "methods.adv.gamma": number(0),
    "methods.eopp.weight": number(0),
    "methods.eopp.tau": number(0, lo_open=True),
    "methods.mmd.weight": number(0),
    "methods.mixup.alpha": number(0, lo_open=True),
    "methods.dfr.lr": number(0, 1, lo_open=True),
    "methods.afr.lr": number(0, 1, lo_open=True),
    "methods.afr.gamma": number(0),
    "methods.afr.reg": number(0),
    "methods.george.overcluster_factor": integer(1, why=" (1: no overclustering)"),
    "methods.george.min_size": integer(1),
    "evaluate.bootstrap": integer(0),
    # --- execution engines (helper `scale`)
    "compute.engine": choice("local", "ray"),
    "compute.threads": or_null(integer(1)),
    "compute.ray_address": or_null(text("a Ray address such as ray://head:10001")),
    "compute.ray_workers": or_null(integer(1)),
}

# Sections (a.b for every key a.b.c) and the wildcard sections (a.b for a key a.b.*).
_WILDCARDS = {k[:-2] for k in SCHEMA if k.endswith(".*")}
_SECTIONS = {".".join(k.split(".")[:i]) for k in SCHEMA for i in range(1, k.count(".") + 1)}


def _name(path: str) -> str:
    return path or "the top level"


def _unknown_keys(node: dict, path: str = "") -> None:
    """Raise ParamsError for the first key that SCHEMA does not know, with a did-you-mean."""
    for key, value in node.items():
        dotted = f"{path}.{key}" if path else str(key)
        if dotted in SCHEMA or path in _WILDCARDS:
            continue
        if dotted in _SECTIONS:
            if not isinstance(value, dict):
                raise ParamsError(f"params.yaml: '{dotted}' is {value!r}; expected a mapping of its keys")
            _unknown_keys(value, dotted)
            continue
        prefix = f"{path}." if path else ""
        siblings = sorted({k[len(prefix):].split(".")[0] for k in [*SCHEMA, *_SECTIONS]
                           if k.startswith(prefix)})
        close = difflib.get_close_matches(str(key), siblings, n=1)
        hint = (f"did you mean '{f'{path}.' if path else ''}{close[0]}'?" if close
                else f"known keys in {_name(path)}: {', '.join(siblings)}")
        raise ParamsError(f"params.yaml: unknown key '{dotted}' ({hint})")


def _lookup(params: dict, dotted: str):
    """(found, value) for a dotted key."""
    node = params
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _get(params: dict, dotted: str):
    found, value = _lookup(params, dotted)
    if not found:
        raise ParamsError(f"params.yaml: missing key '{dotted}'")
    return value


def _set(params: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = value


def _check(cond: bool, key: str, value, expected: str) -> None:
    if not cond:
        raise ParamsError(f"params.yaml: '{key}' is {value!r}; expected {expected}")


def validate(params: dict) -> None:
    """Raise ParamsError naming the first unknown, missing or bad key (SCHEMA), in one line."""
    if not isinstance(params, dict):
        raise ParamsError("params.yaml: expected a mapping at the top level")
    _unknown_keys(params)
    for key, rule in SCHEMA.items():
        if key.endswith(".*"):
            found, section = _lookup(params, key[:-2])
            for sub, value in (section.items() if found and isinstance(section, dict) else ()):
                _check(rule.check(value), f"{key[:-2]}.{sub}", value, rule.expected)
            continue
        found, value = _lookup(params, key)
        if not found:
            if rule.required:
                raise ParamsError(f"params.yaml: missing key '{key}'")
            continue
        _check(rule.check(value), key, value, rule.expected)
    # Table 1's k-means rows are the sweep's runs at idi.k, so nothing is trained twice.
    sweep = params["idi"]["k_sweep"]
    _check(params["idi"]["k"] in sweep, "idi.k", params["idi"]["k"],
           f"one of idi.k_sweep {sweep} (Table 1's k-means rows reuse the sweep's runs; add it there too)")
    # JTT's error set is read from the ERM run after T epochs, so T cannot exceed the epochs trained.
    t = params["methods"]["jtt"]["identification_epochs"]
    _check(max(t if isinstance(t, list) else [t]) <= params["train"]["epochs"],
           "methods.jtt.identification_epochs", t,
           f"an integer from 1 to train.epochs ({params['train']['epochs']})")


def resolve(raw: dict) -> dict:
    """Return a validated copy of `raw` with every null preset-controlled key filled in."""
    if not isinstance(raw, dict):
        raise ParamsError("params.yaml: expected a mapping at the top level")
    params = copy.deepcopy(raw)
    preset = params.get("preset")
    _check(isinstance(preset, str) and preset in PRESETS, "preset", preset, f"one of {', '.join(PRESETS)}")
    for key, value in PRESETS[preset].items():
        if key in REVISION_OF:
            continue
        found, current = _lookup(params, key)
        if found and current is None:
            _set(params, key, value)
    # A preset's revision pins the preset's model only, never a model set in its place.
    for key, model_key in REVISION_OF.items():
        preset_rev = PRESETS[preset].get(key)
        found, current = _lookup(params, key)
        if (found and current is None and preset_rev is not None
                and _get(params, model_key) == PRESETS[preset].get(model_key)):
            _set(params, key, preset_rev)
    validate(params)
    return params


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file as DVC does: YAML 1.2, ruamel.yaml's safe loader (plain data only)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    path = Path(path)
    try:
        with open(path) as f:
            return YAML(typ="safe").load(f)
    except YAMLError as err:
        first = " ".join(str(err).split())[:300]
        raise ParamsError(f"{path}: not valid YAML ({first})") from None


def load(path: str | Path = "params.yaml") -> dict:
    """Read, resolve and validate params.yaml."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such params file")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return resolve(raw)


def table1_and_sweep_ks(params: dict) -> list[int]:
    """Every k the groups stage must cluster with (validation keeps Table 1's k in the sweep)."""
    return sorted(params["idi"]["k_sweep"])
