"""params.yaml: presets, validation, and resolution into plain values.

`preset` fills every key left `null` (offline: runs here with no network; paper: the paper's
corpus and models). Keys set explicitly in params.yaml or with `dvc exp run -S` win.
Validation runs before any stage does work, so bad input costs one clear line, not an hour.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

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
    },
}

CORPORA = ("surrogate", "crema-d")
METHODS = ("erm", "random", "lff", "disent", "pgdro", "rw", "ds", "gdro", "gadro")
GROUP_METHODS = ("rw", "ds", "gdro", "gadro")  # the four that take IDI groups


class ParamsError(ValueError):
    """A params.yaml value is missing, of the wrong type, or out of range."""


def _get(params: dict, dotted: str):
    node = params
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            raise ParamsError(f"params.yaml: missing key '{dotted}'")
        node = node[key]
    return node


def _set(params: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = value


def _check(cond: bool, key: str, value, expected: str) -> None:
    if not cond:
        raise ParamsError(f"params.yaml: '{key}' is {value!r}; expected {expected}")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def resolve(raw: dict) -> dict:
    """Return a validated copy of `raw` with every null preset-controlled key filled in."""
    params = copy.deepcopy(raw)
    preset = params.get("preset")
    _check(preset in PRESETS, "preset", preset, f"one of {sorted(PRESETS)}")
    for key, value in PRESETS[preset].items():
        if _get(params, key) is None:
            _set(params, key, value)
    validate(params)
    return params


def validate(params: dict) -> None:
    """Raise ParamsError naming the first bad key."""
    g = lambda k: _get(params, k)  # noqa: E731
    _check(_is_int(g("seed")), "seed", g("seed"), "an integer")
    _check(g("corpus.name") in CORPORA, "corpus.name", g("corpus.name"), f"one of {list(CORPORA)}")
    for key in ("corpus.audio_dir", "corpus.metadata_dir"):
        _check(g(key) is None or isinstance(g(key), str), key, g(key), "null or a folder path")
    sur = "corpus.surrogate."
    _check(_is_int(g(sur + "n_actors")) and g(sur + "n_actors") >= 10, sur + "n_actors",
           g(sur + "n_actors"), "an integer >= 10 (5 folds need two actors of each sex per block)")
    _check(_is_int(g(sur + "n_sentences")) and 1 <= g(sur + "n_sentences") <= 12, sur + "n_sentences",
           g(sur + "n_sentences"), "an integer from 1 to 12 (CREMA-D's sentences)")
    _check(_is_number(g(sur + "seconds")) and 0.5 <= g(sur + "seconds") <= 10, sur + "seconds",
           g(sur + "seconds"), "a number of seconds in [0.5, 10]")
    _check(_is_number(g("split.ratio")) and g("split.ratio") >= 1, "split.ratio", g("split.ratio"),
           "a number >= 1")
    for key in ("features.upstream", "speaker.model", "idi.pseudo_model"):
        _check(isinstance(g(key), str) and g(key) != "", key, g(key), "a model name, hub id or folder")
    for key in ("features.device", "speaker.device", "train.device"):
        _check(g(key) in ("auto", "cpu", "cuda"), key, g(key), "auto, cpu or cuda")
    _check(_is_number(g("features.batch_seconds")) and g("features.batch_seconds") > 0,
           "features.batch_seconds", g("features.batch_seconds"), "a positive number")
    _check(_is_number(g("idi.pitch_threshold_hz")) and g("idi.pitch_threshold_hz") > 0,
           "idi.pitch_threshold_hz", g("idi.pitch_threshold_hz"), "a positive frequency")
    _check(_is_int(g("idi.k")) and g("idi.k") >= 2, "idi.k", g("idi.k"), "an integer >= 2")
    sweep = g("idi.k_sweep")
    _check(isinstance(sweep, list) and len(sweep) > 0 and all(_is_int(k) and k >= 2 for k in sweep)
           and len(set(sweep)) == len(sweep), "idi.k_sweep", sweep,
           "a non-empty list of distinct integers >= 2")
    # Table 1's k-means rows are the sweep's runs at idi.k, so nothing is trained twice.
    _check(g("idi.k") in sweep, "idi.k", g("idi.k"),
           f"one of idi.k_sweep {sweep} (Table 1's k-means rows reuse the sweep's runs; add it there too)")
    _check(_is_int(g("train.epochs")) and g("train.epochs") >= 1, "train.epochs", g("train.epochs"),
           "an integer >= 1")
    _check(_is_int(g("train.batch_size")) and g("train.batch_size") >= 1, "train.batch_size",
           g("train.batch_size"), "an integer >= 1")
    _check(_is_number(g("train.lr")) and g("train.lr") > 0, "train.lr", g("train.lr"), "a positive number")
    _check(_is_int(g("train.hidden")) and g("train.hidden") >= 1, "train.hidden", g("train.hidden"),
           "an integer >= 1")
    _check(g("train.target") in ("soft", "hard"), "train.target", g("train.target"), "soft or hard")
    methods = g("methods")
    _check(isinstance(methods, dict), "methods", methods, "a mapping of method name to settings")
    for name in methods:
        _check(name in METHODS, f"methods.{name}", name, f"a method in {list(METHODS)}")
    for name in ("gdro", "gadro", "pgdro"):
        eta = g(f"methods.{name}.eta")
        _check(_is_number(eta) and eta > 0, f"methods.{name}.eta", eta, "a positive number")
    adj = g("methods.gadro.adjustment")
    _check(_is_number(adj) and adj >= 0, "methods.gadro.adjustment", adj, "a number >= 0")
    for name in ("lff", "disent"):
        q = g(f"methods.{name}.gce_q")
        _check(_is_number(q) and 0 < q <= 1, f"methods.{name}.gce_q", q, "a number in (0, 1]")
        a = g(f"methods.{name}.ema_alpha")
        _check(_is_number(a) and 0 <= a < 1, f"methods.{name}.ema_alpha", a, "a number in [0, 1)")
    b = g("evaluate.bootstrap")
    _check(_is_int(b) and b >= 0, "evaluate.bootstrap", b, "an integer >= 0")
    _check(g("compute.engine") in ("local", "ray"), "compute.engine", g("compute.engine"), "local or ray")
    for key in ("compute.threads", "compute.ray_workers"):
        _check(g(key) is None or (_is_int(g(key)) and g(key) >= 1), key, g(key), "null or an integer >= 1")
    _check(g("compute.ray_address") is None or (isinstance(g("compute.ray_address"), str)
                                               and g("compute.ray_address") != ""),
           "compute.ray_address", g("compute.ray_address"), "null or a Ray address such as ray://head:10001")


def load(path: str | Path = "params.yaml") -> dict:
    """Read, resolve and validate params.yaml."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such params file")
    with open(path) as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return resolve(raw)


def table1_and_sweep_ks(params: dict) -> list[int]:
    """Every k the groups stage must cluster with (validation keeps Table 1's k in the sweep)."""
    return sorted(params["idi"]["k_sweep"])
