"""A corpus described by data: its classes, folds and demographic attributes (data/corpus/schema.json).

The download stage writes schema.json beside clips.csv and actors.csv; every later stage reads
the class names, the number of folds and the attributes from it, never from constants, so the
pipeline runs on any corpus an importer (fairser.corpus) can describe.

    {"classes": ["angry", ...], "folds": 5, "speaker": "actor",
     "attributes": [{"name": "gender", "column": "sex", "groups": ["Male", "Female"]},
                    {"name": "race", "column": "race", "groups": [...], "excluded": ["Unknown"]},
                    {"name": "age", "column": "age", "groups": ["Young", "Middle", "Elderly"],
                     "edges": [20, 36, 50, 76]}]}

An attribute is a column of actors.csv (one value per speaker). A categorical one is used as it
is: `groups` are the values metrics report, in order, and `excluded` values are a missing group
(the speaker counts everywhere except in that attribute's metrics). A numeric one is binned:
group i holds edges[i] <= value < edges[i + 1] (corpus.bins in params.yaml).
The positive threshold of a K-class corpus is 1/K (PROTOCOL section 5 with K = 6).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fairser.errors import InputError
from fairser.values import GENDER_GROUPS  # noqa: F401 (schema.GENDER_GROUPS: group id 0 = Male, 1 = Female)

SCHEMA_FILE = "schema.json"
SPLITS = ("train", "dev", "test")
# Columns of clips.csv that are not classes (a class may not take one of these names).
RESERVED = ("file", "actor", "speaker", "sentence", "emotion", "level")


@dataclass(frozen=True)
class Attribute:
    """One demographic attribute: a column of actors.csv and the groups metrics report."""

    name: str
    column: str
    groups: tuple[str, ...]
    excluded: tuple[str, ...] = ()
    edges: tuple[float, ...] | None = None  # numeric: group i = [edges[i], edges[i + 1])

    def __post_init__(self):
        object.__setattr__(self, "groups", tuple(str(g) for g in self.groups))
        object.__setattr__(self, "excluded", tuple(str(g) for g in self.excluded))
        if self.edges is not None:
            object.__setattr__(self, "edges", tuple(float(e) for e in self.edges))
        if len(self.groups) < 2:
            raise InputError(f"attribute {self.name!r}: needs at least two groups, has {list(self.groups)}")
        if len(set(self.groups)) != len(self.groups):
            raise InputError(f"attribute {self.name!r}: groups {list(self.groups)} repeat a name")
        if self.edges is not None:
            e = self.edges
            if len(e) != len(self.groups) + 1 or any(b <= a for a, b in zip(e, e[1:])):
                raise InputError(f"attribute {self.name!r}: edges {list(e)} must be increasing and "
                                 f"one more than its {len(self.groups)} group names")

    def group_of(self, value) -> str | None:
        """The group name of one actors.csv value; None for an excluded (missing) value.

        Raises ValueError for a value outside every group.
        """
        if str(value) in self.excluded:  # categorical or numeric (an age given as "unknown")
            return None
        if self.edges is None:
            text = str(value)
            if text in self.groups:
                return text
            raise ValueError(f"{value!r} is not one of {list(self.groups)}"
                             + (f" (or excluded {list(self.excluded)})" if self.excluded else ""))
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
        if not math.isfinite(x):
            raise ValueError(f"{value!r} is not a finite number")
        for name, lo, hi in zip(self.groups, self.edges, self.edges[1:]):
            if lo <= x < hi:
                return name
        raise ValueError(f"{value!r} is outside every group ({self.describe_bins()})")

    def describe_bins(self) -> str:
        return ", ".join(f"{n} [{lo:g}, {hi:g})" for n, lo, hi in zip(self.groups, self.edges, self.edges[1:]))


@dataclass(frozen=True)
class Schema:
    """What a corpus holds: class names in column order, folds, and its attributes."""

    classes: tuple[str, ...]
    folds: int
    attributes: tuple[Attribute, ...] = field(default_factory=tuple)
    speaker: str = "actor"
    # Label smoothing of the stored distribution, p = floor + scale * (vote share): EMO-SUPERB's
    # CREMA-D labels are p = 0.01 + 0.94 c/N (PROTOCOL section 1), and the strict-majority rule reads
    # the vote share back. (0, 1): p is the vote share itself (imported corpora).
    smoothing: tuple[float, float] = (0.0, 1.0)
    # Who is a speaker, when an importer decided it (fairser.corpus.speaker_units): {rule,
    # speakers, unknown_clips, description}, e.g. rule spkrid_gender, "speakers = SpkrID x Gender
    # (SpkrID is a session of more than one speaker) = 10". None: one speaker per id as given.
    speaker_rule: dict | None = None

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "attributes", tuple(self.attributes))
        object.__setattr__(self, "smoothing", tuple(float(x) for x in self.smoothing))
        if len(self.smoothing) != 2 or not self.smoothing[1] > 0:
            raise InputError(f"schema: smoothing {list(self.smoothing)} must be [floor, scale > 0]")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise InputError(f"schema: classes {list(self.classes)} must be at least two distinct names")
        clash = [c for c in self.classes if c in RESERVED or c.startswith("split_")]
        if clash:
            raise InputError(f"schema: class name {clash[0]!r} is a reserved column name of clips.csv")
        if not isinstance(self.folds, int) or self.folds < 1:
            raise InputError(f"schema: folds is {self.folds!r}; expected an integer >= 1")
        names = [a.name for a in self.attributes]
        if len(set(names)) != len(names):
            raise InputError(f"schema: attribute names {names} repeat")

    @property
    def threshold(self) -> float:
        """A class is present iff its share exceeds 1/K (strict), K the number of classes."""
        return 1.0 / len(self.classes)

    @property
    def split_columns(self) -> tuple[str, ...]:
        return tuple(f"split_{f}" for f in range(1, self.folds + 1))

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes)

    def attribute(self, name: str) -> Attribute:
        for a in self.attributes:
            if a.name == name:
                return a
        raise InputError(f"the corpus has no attribute {name!r} (it has: "
                         f"{', '.join(self.attribute_names) or 'none'})")

    def has(self, name: str) -> bool:
        return name in self.attribute_names

    def to_dict(self) -> dict:
        out = {"classes": list(self.classes), "folds": self.folds, "speaker": self.speaker,
               "smoothing": list(self.smoothing), "attributes": []}
        if self.speaker_rule:
            out["speaker_rule"] = dict(self.speaker_rule)
        for a in self.attributes:
            d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(a).items()}
            if not d["excluded"]:
                del d["excluded"]
            if d["edges"] is None:
                del d["edges"]
            out["attributes"].append(d)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Schema":
        return cls(classes=tuple(d["classes"]), folds=int(d["folds"]), speaker=d.get("speaker", "actor"),
                   smoothing=tuple(d.get("smoothing", (0.0, 1.0))), speaker_rule=d.get("speaker_rule"),
                   attributes=tuple(Attribute(name=a["name"], column=a["column"], groups=tuple(a["groups"]),
                                              excluded=tuple(a.get("excluded", ())),
                                              edges=a.get("edges")) for a in d.get("attributes", ())))


def save(schema: Schema, folder: str | Path) -> Path:
    path = Path(folder) / SCHEMA_FILE
    path.write_text(json.dumps(schema.to_dict(), indent=2) + "\n")
    return path


def load(folder: str | Path) -> Schema:
    """The schema of the corpus in `folder` (data/corpus); one-line InputError if absent or bad."""
    path = Path(folder) / SCHEMA_FILE
    if not path.is_file():
        raise InputError(f"{path}: not found (the download stage writes it; rerun `dvc repro download`)")
    try:
        d = json.loads(path.read_text())
        return Schema.from_dict(d)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path}: not a corpus schema ({type(err).__name__}: {err})") from None


# --- the paper's corpus --------------------------------------------------------------------------

# CREMA-D as EMO-SUPERB labels it (PROTOCOL section 1): class order of config.json's emo_type.
CREMA_D_CLASSES = ("angry", "sad", "disgust", "fear", "neutral", "happy")
CREMA_D_RACES = ("Caucasian", "African American", "Asian")  # "Unknown" is a missing group


def bins_attribute(name: str, column: str, bins: dict) -> Attribute:
    """A numeric attribute binned by params corpus.bins.<column>: {edges: [...], names: [...]}."""
    return Attribute(name=name, column=column, groups=tuple(bins["names"]), edges=tuple(bins["edges"]))


def crema_d(bins: dict | None = None) -> Schema:
    """CREMA-D's and the surrogate's schema: six classes, five folds, gender, race, age.

    `bins`: params corpus.bins (age: edges and names); the default is PROTOCOL section 1's groups
    Young 20-35, Middle 36-49, Elderly 50-75 (whole years).
    """
    age = (bins or {}).get("age") or {"edges": [20, 36, 50, 76], "names": ["Young", "Middle", "Elderly"]}
    return Schema(classes=CREMA_D_CLASSES, folds=5, smoothing=(0.01, 0.94), attributes=(
        Attribute("gender", "sex", GENDER_GROUPS),
        Attribute("race", "race", CREMA_D_RACES, excluded=("Unknown",)),
        bins_attribute("age", "age", age),
    ))


# --- reading attributes --------------------------------------------------------------------------

def speaker_groups(actors: pd.DataFrame, schema: Schema, path: str | Path = "actors.csv") -> pd.DataFrame:
    """One row per actor: `actor` and one column per attribute holding its group name (None when
    the value is excluded). A value outside every group is an InputError naming the file, line
    (header = line 1), column and actor."""
    actors = actors.reset_index(drop=True)
    out = pd.DataFrame({"actor": actors["actor"].to_numpy()})
    for a in schema.attributes:
        if a.column not in actors.columns:
            raise InputError(f"{path}: no column {a.column!r} (attribute {a.name!r} of schema.json)")
        values = []
        for i, v in enumerate(actors[a.column].to_numpy()):
            if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v == ""):
                if "" in a.excluded:  # an importer's choice: empty means unknown
                    values.append(None)
                    continue
                raise InputError(f"{path}, line {i + 2}, column {a.column}: actor {actors['actor'][i]} "
                                 f"{a.column} is empty")
            try:
                values.append(a.group_of(v))
            except ValueError as err:
                raise InputError(f"{path}, line {i + 2}, column {a.column}: actor {actors['actor'][i]} "
                                 f"{a.column} {err}") from None
        out[a.name] = np.array(values, dtype=object)
    return out


def clip_groups(clips: pd.DataFrame, actors: pd.DataFrame, schema: Schema,
                actors_path: str | Path = "actors.csv") -> pd.DataFrame:
    """Per clip of `clips` (same order): `file` and one column per attribute (group name or None)."""
    groups = speaker_groups(actors, schema, actors_path).set_index("actor")
    unknown = ~clips["actor"].isin(groups.index)
    if unknown.any():
        raise InputError(f"{actors_path}: no row for actor {clips['actor'][unknown].iloc[0]} "
                         f"(file {clips['file'][unknown].iloc[0]})")
    out = pd.DataFrame({"file": clips["file"].to_numpy()})
    for name in schema.attribute_names:
        out[name] = clips["actor"].map(groups[name]).to_numpy(dtype=object)
    return out


def bias_attribute(schema: Schema, bias: str) -> str | None:
    """params split.bias resolved: the attribute to skew, or None for `none`; InputError if absent."""
    if bias == "none":
        return None
    if not schema.has(bias):
        raise InputError(f"params.yaml: split.bias is {bias!r}, but the corpus has no such attribute "
                         f"(it has: {', '.join(schema.attribute_names) or 'none'}; or use none)")
    return bias


def truth_attribute(schema: Schema, bias: str, truth: str | None) -> str:
    """The attribute whose ground truth the `gender` run set and Table 1 use (params idi.truth).

    idi.truth when set; else split.bias when it is not `none`; else gender if the corpus has it;
    else its first attribute. A corpus without any attribute has no fairness to measure.
    """
    if not schema.attributes:
        raise InputError("schema.json: the corpus has no demographic attribute; fairness metrics "
                         "need at least one (e.g. a Gender column or corpus.speakers)")
    if truth is not None:
        if not schema.has(truth):
            raise InputError(f"params.yaml: idi.truth is {truth!r}, but the corpus has no such attribute "
                             f"(it has: {', '.join(schema.attribute_names)})")
        return truth
    skewed = bias_attribute(schema, bias)
    if skewed is not None:
        return skewed
    return "gender" if schema.has("gender") else schema.attribute_names[0]
