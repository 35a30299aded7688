"""External inputs by content, pinned hub revisions, fail-fast model loading, provenance lines."""

import json
import os
import time
from pathlib import Path

import pytest
import soundfile as sf

from fairser import config, corpus, idi, provenance as P
from fairser import features as F
from fairser import speaker as S
from fairser.errors import InputError
from fairser.constants import SAMPLE_RATE
from helpers import shipped_params, tone
from test_features import tiny_wavlm

pytestmark = pytest.mark.usefixtures("hub_offline")


def params_with(**models):
    """Default params resolved, with model keys (dotted) replaced."""
    raw = shipped_params()
    for dotted, value in models.items():
        section, key = dotted.split("__")
        raw[section][key] = value
    return config.resolve(raw)


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_unchanged_inputs_give_byte_identical_fingerprints(tmp_path):
    params = params_with(features__upstream=tiny_wavlm(tmp_path / "m", "group"))
    P.write_inputs(tmp_path / "a", params)
    P.write_inputs(tmp_path / "b", params)
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


def test_one_byte_of_a_model_folder_changes_only_that_models_fingerprint(tmp_path):
    params = params_with(features__upstream=tiny_wavlm(tmp_path / "m", "group"))
    P.write_inputs(tmp_path / "before", params)
    weights = tmp_path / "m" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    stat = weights.stat()
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime
    P.write_inputs(tmp_path / "after", params)
    before, after = snapshot(tmp_path / "before"), snapshot(tmp_path / "after")
    assert [n for n in before if before[n] != after[n]] == ["upstream.json"]


def crema_like_audio(folder: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        sf.write(folder / f"10{i:02d}_DFA_ANG_XX.wav", tone(0.2, 120 + 10 * i, seed=i), SAMPLE_RATE,
                 subtype="PCM_16")


def test_adding_or_replacing_a_wav_changes_the_corpus_fingerprint(tmp_path):
    audio = tmp_path / "audio"
    crema_like_audio(audio, 2)
    spec = {"name": "crema-d", "audio_dir": str(audio), "metadata_dir": None}
    first = P.fingerprint_corpus(spec)
    assert first["audio_dir"]["files"] == 2
    # Replaced in place with other samples of the same size and mtime: still seen.
    clip = audio / "1000_DFA_ANG_XX.wav"
    stat = clip.stat()
    sf.write(clip, tone(0.2, 333, seed=9), SAMPLE_RATE, subtype="PCM_16")
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert clip.stat().st_size == stat.st_size
    replaced = P.fingerprint_corpus(spec)
    assert replaced["audio_dir"]["sha256"] != first["audio_dir"]["sha256"]
    sf.write(audio / "1099_DFA_ANG_XX.wav", tone(0.2, 200), SAMPLE_RATE, subtype="PCM_16")
    added = P.fingerprint_corpus(spec)
    assert added["audio_dir"]["files"] == 3 and added["audio_dir"]["sha256"] != replaced["audio_dir"]["sha256"]


def test_user_corpora_fingerprint_labels_manifest_speakers_and_nested_audio(tmp_path):
    import corpora

    e = corpora.emo_superb(tmp_path / "e", n_speakers=5, clips_per_speaker=1, seconds=(1.0, 1.2))
    (e["audio_dir"] / "sub").mkdir()
    sf.write(e["audio_dir"] / "sub" / "x.wav", tone(0.2, 150), SAMPLE_RATE, subtype="PCM_16")
    spk = tmp_path / "spk.csv"
    spk.write_text("SpkrID,accent\nspk01,a\n")
    spec = {"name": "emo-superb", "audio_dir": str(e["audio_dir"]), "metadata_dir": None,
            "labels_dir": str(e["labels_dir"]), "manifest": str(tmp_path / "ignored.csv"),
            "speakers": str(spk)}
    first = P.fingerprint_corpus(spec)
    assert first["audio_dir"]["files"] == 6 and first["labels_dir"]["files"] == 6  # 5 folds + config
    assert first["manifest"] is None and first["speakers"]["files"] == 1
    (e["labels_dir"] / "labels_consensus_1.csv").write_text("edited\n")
    spk.write_text("SpkrID,accent\nspk01,b\n")
    second = P.fingerprint_corpus(spec)
    assert second["labels_dir"]["sha256"] != first["labels_dir"]["sha256"]
    assert second["speakers"]["sha256"] != first["speakers"]["sha256"]
    m = corpora.manifest(tmp_path / "m", n_speakers=5, clips_per_speaker=1, seconds=(1.0, 1.2))
    got = P.fingerprint_corpus({"name": "manifest", "audio_dir": str(m["audio_dir"]), "metadata_dir": None,
                                "labels_dir": None, "manifest": str(m["manifest"]), "speakers": None})
    assert got["manifest"]["files"] == 1 and got["labels_dir"] is None and got["audio_dir"]["files"] == 5
    with pytest.raises(InputError, match="corpus.manifest"):
        P.fingerprint_corpus({"name": "manifest", "audio_dir": None, "manifest": str(tmp_path / "no.csv")})


def test_surrogate_corpus_ignores_audio_dir(tmp_path):
    assert P.fingerprint_corpus({"name": "surrogate", "audio_dir": str(tmp_path / "none"),
                                 "metadata_dir": None})["audio_dir"] is None


@pytest.mark.parametrize("load, key", [
    (lambda name: F.load_upstream(name), "features.upstream"),
    (lambda name: S.load_embedder(name), "speaker.model"),
    (lambda name: idi.load_pseudo_model(name, threshold_hz=165.0), "idi.pseudo_model"),
])
def test_missing_local_model_folder_says_folder_not_found_naming_the_param(load, key):
    with pytest.raises(InputError) as err:
        load("/no/such/folder")
    msg = str(err.value)
    assert msg.startswith(f"{key} '/no/such/folder': folder not found") and "Repo id" not in msg


@pytest.mark.parametrize("load, key", [
    (lambda name: F.load_upstream(name), "features.upstream"),
    (lambda name: S.load_embedder(name), "speaker.model"),
    (lambda name: idi.load_pseudo_model(name, threshold_hz=165.0), "idi.pseudo_model"),
])
def test_uncached_hub_id_offline_fails_at_once_saying_how_to_run_offline(load, key):
    start = time.perf_counter()
    with pytest.raises(InputError) as err:
        load("nobody-here/no-such-model")
    assert time.perf_counter() - start < 5  # no hub retries
    msg = str(err.value)
    assert f"{key} 'nobody-here/no-such-model'" in msg and "HF_HUB_OFFLINE=1" in msg
    assert f"-S {key}=/path/to/" in msg and "\n" not in msg


def test_a_long_load_error_is_shortened_between_words_keeping_key_and_fix():
    cause = " ".join(f"word{i}" for i in range(200))
    msg = str(P.model_load_error("features.upstream", "x/y", RuntimeError(cause)))
    quoted = msg.split("(RuntimeError: ", 1)[1].split(" …)", 1)[0]
    assert quoted.split() == cause.split()[:len(quoted.split())]  # whole words only
    assert len(quoted) <= P.CAUSE_CHARS
    assert msg.endswith("-S features.upstream=/path/to/wavlm-base-plus")


def test_a_revision_for_a_local_folder_is_refused_naming_both_keys(tmp_path):
    folder = tiny_wavlm(tmp_path / "m", "group")
    with pytest.raises(InputError, match=r"features.revision is 'abc'.*features.upstream"):
        P.fingerprint_model("features.upstream", folder, "abc")


def test_an_unpinned_hub_id_resolves_to_the_commit_its_cache_holds(tmp_path, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    monkeypatch.setattr(P, "_hub_cache", lambda: tmp_path / "hub")
    fp = P.fingerprint_model("features.upstream", "org/model", None)
    assert (fp["kind"], fp["revision"], fp["resolved"]) == ("hub", None, commit)
    assert P.fingerprint_model("features.upstream", "org/other", None)["resolved"] is None  # offline


def test_paper_preset_pins_its_hub_models_and_only_those():
    raw = shipped_params()
    raw["preset"] = "paper"
    params = config.resolve(raw)
    assert params["features"]["revision"] == "4c66d4806a428f2e922ccfa1a962776e232d487b"
    assert params["speaker"]["revision"] == "0f99f2d0ebe89ac095bcc5903c4dd8f72b367286"
    assert params["idi"]["pseudo_revision"] is None  # no published commit found
    raw["features"]["upstream"] = "/models/my-wavlm"
    assert config.resolve(raw)["features"]["revision"] is None


def test_a_revision_with_spaces_is_a_params_error():
    raw = shipped_params()
    raw["speaker"]["revision"] = "main branch"
    with pytest.raises(config.ParamsError, match="speaker.revision"):
        config.resolve(raw)


def test_hf_models_load_with_remote_code_off(tmp_path, monkeypatch):
    seen = []

    class Probe:
        @staticmethod
        def from_pretrained(name, **kwargs):
            seen.append(kwargs)
            return object()

    P.load_hf("features.upstream", tiny_wavlm(tmp_path / "m", "group"), None, Probe)
    assert seen == [{"revision": None, "trust_remote_code": False}]


def test_corpus_json_records_coverage_preset_and_seed(tmp_path):
    raw = shipped_params()
    raw["corpus"]["surrogate"].update(n_actors=10, n_sentences=1, seconds=0.5)
    corpus.build(tmp_path / "c", config.resolve(raw), inputs={"audio_dir": None})
    info = json.loads((tmp_path / "c" / "corpus.json").read_text())
    assert (info["actors_used"], info["actors"], info["clips_used"]) == (10, 10, info["clips"])
    assert info["provenance"]["preset"] == "offline" and info["provenance"]["seed"] == 0


def test_a_subset_of_actors_says_so_in_the_caption():
    info = {"corpus": "crema-d", "notice": None, "clips": 7442, "skipped": 6800, "clips_used": 642,
            "actors": 91, "actors_used": 8}
    models = {"features.upstream": {"model": "microsoft/wavlm-base-plus", "kind": "hub",
                                    "resolved": "4c66d4806a428f2e922ccfa1a962776e232d487b"},
              "speaker.model": {"model": "/m/ecapa", "kind": "folder", "sha256": "ab" * 32},
              "idi.pseudo_model": {"model": "pitch", "kind": "builtin"}}
    line = P.caption(corpus_info=info, models=models, preset="paper", seed=0, seeds=3)
    assert line == ("CREMA-D (subset): 8 of 91 actors, 642 of 7442 clips; upstream "
                    "microsoft/wavlm-base-plus@4c66d48; speaker folder /m/ecapa (sha256 abababab); "
                    "pseudo pitch (built-in); preset paper, seed 0, 3 training seeds")
    diffs = P.paper_differences(corpus_info=info, models=models)
    assert diffs[0].startswith("corpus: ours CREMA-D (subset): 8 of 91 actors")
    assert any(d.startswith("speaker model: ours folder /m/ecapa") for d in diffs)
    assert not any(d.startswith("upstream") for d in diffs)  # the paper's hub id


def test_loading_and_running_an_hf_model_prints_no_progress_bar_and_no_mask_warning(tmp_path, capfd):
    import warnings

    from helpers import tone

    name = tiny_wavlm(tmp_path / "m", "layer")  # padded batches: the mask warning's code path
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        up = F.load_upstream(name)
        up.pooled([tone(0.3, 100), tone(0.5, 120)])
    assert not [w for w in caught if "key_padding_mask" in str(w.message)]
    assert "Loading weights" not in capfd.readouterr().err
