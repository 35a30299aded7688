"""params.yaml: presets fill nulls, explicit keys win, bad values fail with one line naming the key."""

import copy
from pathlib import Path

import pytest
import yaml

from fairser import config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_default_params_resolve_to_the_offline_setup(raw):
    params = config.resolve(raw)
    assert params["corpus"]["name"] == "surrogate"
    assert params["features"]["upstream"] == "fbank"
    assert params["speaker"]["model"] == "resemblyzer"
    assert params["idi"]["pseudo_model"] == "pitch"


def test_paper_preset_switches_corpus_and_every_model(raw):
    raw["preset"] = "paper"
    params = config.resolve(raw)
    assert params["corpus"]["name"] == "crema-d"
    assert params["features"]["upstream"] == "microsoft/wavlm-base-plus"
    assert params["speaker"]["model"] == "speechbrain/spkrec-ecapa-voxceleb"
    assert params["idi"]["pseudo_model"] == config.PRESETS["paper"]["idi.pseudo_model"]


def test_an_explicit_key_overrides_the_preset(raw):
    raw["preset"] = "paper"
    raw["features"]["upstream"] = "/models/wavlm-base-plus"
    params = config.resolve(raw)
    assert params["features"]["upstream"] == "/models/wavlm-base-plus"
    assert params["corpus"]["name"] == "crema-d"


def test_resolve_leaves_its_input_untouched(raw):
    before = copy.deepcopy(raw)
    config.resolve(raw)
    assert raw == before


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        (("preset",), "fast", "preset"),
        (("corpus", "name"), "iemocap", "corpus.name"),
        (("corpus", "surrogate", "n_sentences"), 13, "corpus.surrogate.n_sentences"),
        (("split", "ratio"), 0.5, "split.ratio"),
        (("split", "ratio"), "20", "split.ratio"),
        (("idi", "k"), 1, "idi.k"),
        (("idi", "k"), 12, "idi.k"),  # not in the sweep
        (("idi", "k_sweep"), [2, 2, 16], "idi.k_sweep"),
        (("idi", "k_sweep"), 16, "idi.k_sweep"),
        (("train", "epochs"), 0, "train.epochs"),
        (("train", "epochs"), True, "train.epochs"),
        (("train", "lr"), -1e-4, "train.lr"),
        (("train", "target"), "mixed", "train.target"),
        (("methods", "gdro", "eta"), 0, "methods.gdro.eta"),
        (("methods", "lff", "gce_q"), 1.5, "methods.lff.gce_q"),
        (("evaluate", "bootstrap"), -1, "evaluate.bootstrap"),
    ],
)
def test_a_bad_value_is_one_error_naming_its_key(raw, key, value, named):
    node = raw
    for part in key[:-1]:
        node = node[part]
    node[key[-1]] = value
    with pytest.raises(config.ParamsError) as err:
        config.resolve(raw)
    message = str(err.value)
    assert f"'{named}'" in message
    assert "\n" not in message


def test_an_unknown_method_section_is_rejected(raw):
    raw["methods"]["mixup"] = {"alpha": 0.2}
    with pytest.raises(config.ParamsError, match="methods.mixup"):
        config.resolve(raw)


def test_a_missing_key_is_named(raw):
    del raw["train"]["lr"]
    with pytest.raises(config.ParamsError, match="train.lr"):
        config.resolve(raw)


def test_load_names_a_missing_file(tmp_path):
    with pytest.raises(config.ParamsError, match="nope.yaml"):
        config.load(tmp_path / "nope.yaml")


def test_kmeans_ks_are_the_sweep(raw):
    raw["idi"]["k_sweep"] = [32, 2, 16]
    assert config.table1_and_sweep_ks(config.resolve(raw)) == [2, 16, 32]


@pytest.mark.parametrize(("key", "value"), [("engine", "dask"), ("threads", 0), ("threads", 1.5),
                                            ("ray_workers", 0), ("ray_address", "")])
def test_bad_compute_values_are_one_line_naming_the_key(raw, key, value):
    raw["compute"][key] = value
    with pytest.raises(config.ParamsError, match=rf"'compute.{key}'"):
        config.resolve(raw)
