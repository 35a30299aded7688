"""params.yaml: presets fill nulls, explicit keys win, bad values fail with one line naming the key."""

import copy
from pathlib import Path

import subprocess
import sys

import pytest
import yaml

from fairser import config
from helpers import shipped_params, shipped_params_text

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def raw() -> dict:
    return shipped_params()


def _set(raw: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return raw


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
    raw["methods"]["cutmix"] = {"alpha": 0.2}
    with pytest.raises(config.ParamsError, match="methods.cutmix"):
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


# --- issue 10: one YAML reader for DVC and the stages, a schema for every key -------------------

def test_load_reads_yaml_1_2_so_1e_4_is_a_number_as_for_dvc(tmp_path):
    from dvc.utils.serialize import parse_yaml

    text = shipped_params_text().replace("lr: 1.0e-4", "lr: 1e-4")
    assert "lr: 1e-4" in text
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert yaml.safe_load(text)["train"]["lr"] == "1e-4"  # PyYAML (YAML 1.1): a string
    assert parse_yaml(text, str(path))["train"]["lr"] == 1e-4  # what DVC sees
    assert config.load(path)["train"]["lr"] == 1e-4


def test_a_duplicated_key_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(shipped_params_text() + "seed: 1\n")
    with pytest.raises(config.ParamsError) as err:
        config.load(path)
    assert str(err.value).startswith(f"{path}: not valid YAML") and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("seed", -1),
        ("seed", 1.5),
        ("train.lr", float("inf")),
        ("train.lr", 1e308),
        ("train.lr", float("nan")),
        ("methods.gdro.eta", float("inf")),
        ("methods.disent.swap_after_epoch", -5),
        ("methods.disent.lambda_swap", -1.0),
        ("split.ratio", float("inf")),
        ("split.min_clips_per_class.train", -1),
        ("split.min_clips_per_group.dev", 0.5),
        ("split.on_degenerate", "ignore"),
        ("split.on_sparse_class", "ignore"),
        ("corpus.surrogate.seconds", float("nan")),
    ],
)
def test_an_out_of_range_or_non_finite_value_names_its_key(raw, key, value):
    with pytest.raises(config.ParamsError) as err:
        config.resolve(_set(raw, key, value))
    assert f"'{key}' is " in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("train.epoch", "train.epochs"),
        ("sed", "seed"),
        ("split.min_clips_per_clas.train", "split.min_clips_per_class"),
        ("methods.gdro.etta", "methods.gdro.eta"),
        ("corpus.surrogate.n_actor", "corpus.surrogate.n_actors"),
    ],
)
def test_an_unknown_key_at_any_level_is_named_with_a_suggestion(raw, key, suggestion):
    with pytest.raises(config.ParamsError) as err:
        config.resolve(_set(raw, key, 1))
    message = str(err.value)
    assert f"unknown key '{key}'" in message or f"unknown key '{key.rsplit('.', 1)[0]}'" in message
    assert f"did you mean '{suggestion}'?" in message


def test_an_unknown_method_section_lists_the_known_ones(raw):
    with pytest.raises(config.ParamsError) as err:
        config.resolve(_set(raw, "methods.foo.eta", 1))
    assert "unknown key 'methods.foo'" in str(err.value)
    assert "gdro" in str(err.value)


def test_a_section_given_as_a_scalar_is_named(raw):
    raw["train"] = 5
    with pytest.raises(config.ParamsError, match="'train' is 5; expected a mapping"):
        config.resolve(raw)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("train.seeds", 3),
        ("features.revision", "0123abc"),
        ("speaker.revision", None),
        ("idi.pseudo_revision", "main"),
        ("compute.engine", "ray"),
        ("compute.threads", None),
        ("compute.threads", 4),
        ("compute.ray_address", "ray://head:10001"),
        ("methods.jtt.lambda_up", 20),
        ("methods.george.eta", 0.01),
    ],
)
def test_the_keys_other_helpers_add_are_accepted(raw, key, value):
    assert config._lookup(config.resolve(_set(raw, key, value)), key) == (True, value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("train.seeds", 0),
        ("compute.engine", "dask"),
        ("compute.threads", 0),
        ("methods.jtt.lambda_up", "many"),
        ("methods.george.eta", float("inf")),
    ],
)
def test_the_keys_other_helpers_add_are_checked(raw, key, value):
    with pytest.raises(config.ParamsError, match=f"'{key}' is "):
        config.resolve(_set(raw, key, value))


def _leaves(node: dict, path: str = ""):
    for key, value in node.items():
        dotted = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            yield from _leaves(value, dotted)
        else:
            yield dotted


def test_the_schema_and_params_yaml_name_the_same_required_keys(raw):
    required = {k for k, rule in config.SCHEMA.items() if rule.required and not k.endswith(".*")}
    assert required <= set(_leaves(raw))
    wildcards = [k[:-1] for k in config.SCHEMA if k.endswith(".*")]
    assert {k for k in _leaves(raw) if not any(k.startswith(w) for w in wildcards)} <= set(config.SCHEMA)


def test_the_params_stage_fails_in_one_line_and_writes_nothing(tmp_path):
    text = shipped_params_text().replace("lr: 1.0e-4", "lr: .inf")
    (tmp_path / "params.yaml").write_text(text)
    cmd = [sys.executable, str(ROOT / "stages" / "params.py"), "--out", str(tmp_path / "p"),
           "--params", str(tmp_path / "params.yaml")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "error: params.yaml: 'train.lr' is inf; expected a finite number in (0, 1]"]
    assert not (tmp_path / "p").exists()


def test_the_params_stage_output_is_the_same_for_any_valid_params(tmp_path):
    outputs = []
    for lr in ("1.0e-4", "3e-4"):
        text = shipped_params_text().replace("lr: 1.0e-4", f"lr: {lr}")
        (tmp_path / "params.yaml").write_text(text)
        cmd = [sys.executable, str(ROOT / "stages" / "params.py"), "--out", str(tmp_path / lr),
               "--params", str(tmp_path / "params.yaml")]
        subprocess.run(cmd, check=True, capture_output=True)
        outputs.append(sorted((p.name, p.read_bytes()) for p in (tmp_path / lr).iterdir()))
    assert outputs[0] == outputs[1] and outputs[0]


@pytest.mark.parametrize(("key", "value"), [("engine", "dask"), ("threads", 0), ("threads", 1.5),
                                            ("ray_workers", 0), ("ray_address", "")])
def test_bad_compute_values_are_one_line_naming_the_key(raw, key, value):
    raw["compute"][key] = value
    with pytest.raises(config.ParamsError, match=rf"'compute.{key}'"):
        config.resolve(raw)


@pytest.mark.parametrize("bins", [
    {"edges": [20, 36], "names": ["Young", "Old"]},        # one edge short
    {"edges": [20, 36, 30], "names": ["Young", "Old"]},    # not increasing
    {"edges": [20, 36, 50], "names": ["Young", "Young"]},  # a name twice
    {"edges": [20, 36, 50]},                               # no names
])
def test_corpus_bins_need_increasing_edges_and_one_name_per_bin(raw, bins):
    params = copy.deepcopy(raw)
    params["corpus"]["bins"]["age"] = bins
    with pytest.raises(config.ParamsError, match=r"'corpus\.bins\.age' is .*expected \{edges"):
        config.resolve(params)
