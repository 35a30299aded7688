"""The biased train and dev sets (paper: 1:20 by gender), and the counts behind Tables A2 and A3.

Definitions (docs/PROTOCOL.md sections 1 and 2), for a corpus of K classes (schema.json):
- multi-label target: y_k = 1 iff p_k > 1/K (strict);
- single label: the class with a strict majority of votes, c_k / N > 0.5, where the vote share is
  recovered from the stored distribution by the schema's smoothing (CREMA-D: p_k = 0.01 + 0.94 c_k / N);
- majority group of a class: the group of the bias attribute (params split.bias) with most
  strict-majority clips of it over the corpus;
- per fold, per class, in train and in dev: keep every majority-group clip and, of each other
  group, floor(n_majority / ratio) clips drawn with a seeded RNG; clips without a strict
  majority leave train and dev; test is untouched. split.bias `none` keeps every train and dev
  clip with a strict majority.

Tables A2 and A3 count the *single* label in their emotion columns (fold 1 test: 899 of 1,463
clips have a strict majority, and the six emotion counts sum to 899), so counts.csv gives both
that (`label`) and the multi-label count (`emotion`).
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

import numpy as np
import pandas as pd

from fairser.errors import InputError
from fairser.errors import ParamsError
from fairser.io import atomic_dir, read_csv
from fairser.metrics import binarize
from fairser.schema import SPLITS, Schema, bias_attribute, speaker_groups, truth_attribute
from fairser.schema import load as load_schema

# p is stored rounded (6 decimals in EMO-SUPERB), so c/N recovered from it is off by up to about
# 1e-6; a tie at exactly one half (e.g. 5 of 10 votes) must not count as a majority. 1e-3 is far
# above the rounding error and below the gap to the next share above 1/2 for fewer than 500 votes.
_SHARE_TOLERANCE = 1e-3
CREMA_D_SMOOTHING = (0.01, 0.94)

SKIPPED_COLUMNS = ("file", "reason")
# Split name in counts.csv for skipped clips that clips.csv does not list (their fold is unknown).
UNLISTED = "unlisted"


# --- labels -------------------------------------------------------------------------------------

def multi_hot(p, threshold: float) -> np.ndarray:
    """(N, K) bool multi-label target: y_k = p_k > threshold (1/K), strict (PROTOCOL section 1).

    CREMA-D's ten entries stored as 0.166667 lie just above 1/6 and count positive, as in
    EMO-SUPERB. The rule is the one that binarises predictions (fairser.metrics.binarize).
    """
    return binarize(p, threshold).astype(bool)


def vote_share(p, smoothing: tuple[float, float] = CREMA_D_SMOOTHING) -> np.ndarray:
    """(N, K) vote shares c_k / N recovered from p_k = floor + scale c_k / N (PROTOCOL section 1)."""
    floor, scale = smoothing
    return (np.asarray(p, dtype=float) - floor) / scale


def majority_label(p, *, n_classes: int = 6, smoothing: tuple[float, float] = CREMA_D_SMOOTHING) -> np.ndarray:
    """(N,) int class index with a strict majority of votes (c_k / N > 0.5), -1 where none.

    PROTOCOL section 2, step 1. At most one class can hold more than half of the votes.
    """
    share = vote_share(p, smoothing)
    if share.ndim != 2 or share.shape[1] != n_classes:
        raise ValueError(f"p must have shape (N, {n_classes}), got {share.shape}")
    has = share > 0.5 + _SHARE_TOLERANCE
    return np.where(has.any(axis=1), has.argmax(axis=1), -1)


def label_names(labels, classes) -> np.ndarray:
    """Class names for label indices, '' for -1 (folds.csv's `label` column)."""
    names = np.array([*classes, ""], dtype=object)
    return names[np.asarray(labels, dtype=int)]  # -1 picks the trailing ''


def majority_group_by_class(*, labels, groups, classes, group_names) -> dict[str, str]:
    """Class name -> the group with most strict-majority clips of it (PROTOCOL section 2, step 2).

    `labels` are majority_label() indices and `groups` the clips' group names, over the whole
    corpus (every fold sees the same corpus-wide trend). A tie, including a class with no clips at
    all, goes to the first of `group_names`: the rule needs one answer, and a tie has no natural one.
    """
    labels = np.asarray(labels)
    groups = np.asarray(groups, dtype=object)
    out = {}
    for k, name in enumerate(classes):
        n = [int(np.sum((labels == k) & (groups == g))) for g in group_names]
        out[name] = group_names[int(np.argmax(n))]  # argmax takes the first on a tie
    return out


# --- biasing ------------------------------------------------------------------------------------

def _check_ratio(ratio) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not ratio >= 1:
        raise ParamsError(f"split.ratio is {ratio!r}; expected a number >= 1")


def bias_split(*, files, split, labels, groups, majority: dict[str, str] | None, classes,
               group_names=(), ratio: float, seed: int, fold: int = 1) -> np.ndarray:
    """(N,) bool: the clips of one fold kept in the biased data (PROTOCOL section 2, steps 3-4).

    Per class, in train and in dev: every clip whose strict-majority label is that class and
    whose group is its majority group is kept, and of each other group of `group_names`,
    floor(n_majority / ratio) clips are drawn without replacement (all of them if fewer). Clips
    whose group is None (the bias attribute's value is excluded, e.g. race "Unknown") leave train
    and dev: the skew is defined over known groups only. Clips with no strict majority (label -1)
    are dropped from train and dev. Every test clip is kept. `majority` None (split.bias none):
    every train and dev clip with a strict majority is kept.

    Each (fold, split, class) cell draws from its own RNG seeded by (seed, fold, split, class),
    plus the group's index when there are more than two groups, over candidates sorted by file
    name, so the draw depends neither on row order nor on the other cells. Ratio 1 keeps as many
    clips of each minority group as of the majority (all, when fewer).
    """
    _check_ratio(ratio)
    files = np.asarray(files, dtype=object)
    split = np.asarray(split, dtype=object)
    labels = np.asarray(labels, dtype=int)
    groups = np.asarray(groups, dtype=object)
    if not (len(files) == len(split) == len(labels) == len(groups)):
        raise ValueError("files, split, labels and groups must have the same length")
    keep = split == "test"
    if majority is None:
        return keep | ((split != "test") & (labels >= 0))
    missing = set(classes) - set(majority)
    if missing:
        raise ValueError(f"the majority-group table lacks {sorted(missing)}")
    for s_index, s in enumerate(SPLITS):
        if s == "test":
            continue
        for k, name in enumerate(classes):
            cell = (split == s) & (labels == k)
            major = cell & (groups == majority[name])
            keep |= major
            for j, g in enumerate(group_names):
                if g == majority[name]:
                    continue
                minor = np.flatnonzero(cell & (groups == g))
                n_draw = min(int(np.floor(major.sum() / ratio)), len(minor))
                if n_draw == 0:
                    continue
                minor = minor[np.argsort(files[minor], kind="stable")]
                # SeedSequence wants non-negative entropy; the modulus maps any int64 seed one-to-one.
                entropy = [seed % 2**64, fold, s_index, k] + ([j] if len(group_names) > 2 else [])
                rng = np.random.default_rng(entropy)
                keep[rng.choice(minor, size=n_draw, replace=False)] = True
    return keep


# --- tables -------------------------------------------------------------------------------------

def clip_attributes(clips: pd.DataFrame, actors: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Per clip of `clips` (same order): file, label index (PROTOCOL sections 1-2), and per attribute its value:
    the group name, or for an excluded categorical value the value itself (counts.csv lists it)."""
    groups = speaker_groups(actors, schema).set_index("actor")
    raw = actors.set_index("actor")
    out = pd.DataFrame({"file": clips["file"].to_numpy()})
    for a in schema.attributes:
        value = groups[a.name]
        if a.edges is None:
            value = value.where(value.notna(), raw[a.column].astype(str))
        out[a.name] = clips["actor"].map(value).to_numpy(dtype=object)
    out["label"] = majority_label(clips[list(schema.classes)].to_numpy(), n_classes=len(schema.classes),
                                  smoothing=schema.smoothing)
    return out


def _bias_groups(attrs: pd.DataFrame, schema: Schema, bias: str | None) -> np.ndarray:
    """The clips' bias-attribute group names, None where the value is excluded."""
    if bias is None:
        return np.full(len(attrs), None, dtype=object)
    names = set(schema.attribute(bias).groups)
    return np.array([v if v in names else None for v in attrs[bias]], dtype=object)


def majority_table(attrs: pd.DataFrame, schema: Schema, bias: str | None) -> dict[str, str] | None:
    """Class -> majority group of `bias` over every clip of clip_attributes(); None when bias is None."""
    if bias is None:
        return None
    return majority_group_by_class(labels=attrs["label"], groups=_bias_groups(attrs, schema, bias),
                                   classes=schema.classes, group_names=schema.attribute(bias).groups)


def fold_table(clips: pd.DataFrame, actors: pd.DataFrame, skipped: pd.DataFrame, schema: Schema, *,
               bias: str | None, ratio: float, seed: int) -> pd.DataFrame:
    """folds.csv: `fold, file, split, label` for the biased train/dev sets and every test clip.

    Clips in `skipped` leave every split. The majority group per class comes from every clip
    in `clips`, skipped or not: it is a property of the labels, not of the audio we could use.
    `label` is the strict-majority class name, '' where there is none (test only).
    """
    _check_ratio(ratio)
    attrs = clip_attributes(clips, actors, schema)
    groups_all = _bias_groups(attrs, schema, bias)
    majority = majority_table(attrs, schema, bias)
    group_names = schema.attribute(bias).groups if bias is not None else ()
    usable = ~clips["file"].isin(set(skipped["file"])).to_numpy()
    files = attrs["file"].to_numpy()[usable]
    labels = attrs["label"].to_numpy()[usable]
    groups = groups_all[usable]
    parts = []
    for fold in range(1, schema.folds + 1):
        split = clips[f"split_{fold}"].to_numpy()[usable]
        keep = bias_split(files=files, split=split, labels=labels, groups=groups, majority=majority,
                          classes=schema.classes, group_names=group_names, ratio=ratio, seed=seed,
                          fold=fold)
        parts.append(pd.DataFrame({"fold": fold, "file": files[keep], "split": split[keep],
                                   "label": label_names(labels[keep], schema.classes)}))
    out = pd.concat(parts, ignore_index=True)
    order = out["split"].map({s: i for i, s in enumerate(SPLITS)})
    out = out.assign(_o=order).sort_values(["fold", "_o", "file"], kind="stable")
    return out.drop(columns="_o").reset_index(drop=True)


def count_table(folds: pd.DataFrame, clips: pd.DataFrame, actors: pd.DataFrame,
                skipped: pd.DataFrame, schema: Schema, *, focus: str | None) -> pd.DataFrame:
    """counts.csv: `fold, split, variable, value, n` for every fold and split of `folds`.

    Variables (Tables A2, A3): `label` (strict-majority class: the tables' emotion columns),
    `emotion` (multi-label p > 1/K, a clip counts once per positive class), `label_<focus>` and
    `emotion_<focus>` (value 'angry/Female') for the focus attribute (the bias attribute, else
    the ground-truth one; CREMA-D: gender), one variable per attribute (its groups, then any
    excluded value present, e.g. race 'Unknown'), and `skipped` (value 'total' and one per reason:
    clips of that split left out by the skip policy; skipped clips that clips.csv does not list go
    under split 'unlisted'). Every category appears, with n = 0 where empty, so a fold with an
    empty split still has its rows.
    """
    classes = list(schema.classes)
    attrs = clip_attributes(clips, actors, schema).set_index("file")
    multi = pd.DataFrame(multi_hot(clips[classes].to_numpy(), schema.threshold), columns=classes,
                         index=attrs.index)
    categories = {"label": classes, "emotion": classes}
    focus_groups = list(schema.attribute(focus).groups) if focus is not None else []
    if focus is not None:
        categories[f"label_{focus}"] = [f"{e}/{g}" for e in classes for g in focus_groups]
        categories[f"emotion_{focus}"] = [f"{e}/{g}" for e in classes for g in focus_groups]
    for a in schema.attributes:
        extra = (sorted(set(actors[a.column].astype(str)) - set(a.groups)) if a.edges is None
                 else [])
        categories[a.name] = list(a.groups) + extra
    rows = []
    for fold in range(1, schema.folds + 1):
        for s in SPLITS:
            files = folds.loc[(folds["fold"] == fold) & (folds["split"] == s), "file"]
            a = attrs.loc[files]
            m = multi.loc[files]
            lab = a["label"].to_numpy()
            n = {}
            for k, e in enumerate(classes):
                n[("label", e)] = int(np.sum(lab == k))
                n[("emotion", e)] = int(m[e].sum())
                for g in focus_groups:
                    is_g = (a[focus] == g).to_numpy()
                    n[(f"label_{focus}", f"{e}/{g}")] = int(np.sum((lab == k) & is_g))
                    n[(f"emotion_{focus}", f"{e}/{g}")] = int(np.sum(m[e].to_numpy() & is_g))
            for attr in schema.attribute_names:
                vc = a[attr].value_counts()
                for v in categories[attr]:
                    n[(attr, v)] = int(vc.get(v, 0))
            for var, values in categories.items():
                rows += [(fold, s, var, v, n[(var, v)]) for v in values]
    rows += _skipped_rows(clips, skipped, schema.folds)
    return pd.DataFrame(rows, columns=["fold", "split", "variable", "value", "n"])


def _skipped_rows(clips: pd.DataFrame, skipped: pd.DataFrame, n_folds: int) -> list[tuple]:
    """counts.csv rows for skipped clips: per fold and split, 'total' and one per reason."""
    split_of = clips.set_index("file")
    listed = skipped["file"].isin(split_of.index).to_numpy()
    reasons = sorted(set(skipped["reason"]))
    why = skipped["reason"].to_numpy()
    splits = list(SPLITS) + ([UNLISTED] if not listed.all() else [])
    rows = []
    for fold in range(1, n_folds + 1):
        where = np.full(len(skipped), UNLISTED, dtype=object)
        where[listed] = split_of.loc[skipped["file"][listed], f"split_{fold}"].to_numpy()
        for s in splits:
            rows.append((fold, s, "skipped", "total", int(np.sum(where == s))))
            rows += [(fold, s, "skipped", r, int(np.sum((where == s) & (why == r))))
                     for r in reasons]
    return rows


# --- coverage rules (issue 10) -------------------------------------------------------------------

def coverage_shortfalls(counts: pd.DataFrame, *, min_per_class: dict, min_per_group: dict,
                        focus: str | None, group_names=()) -> list[dict]:
    """Every (fold, split, class or group) below its minimum, in fold, split, classes-then-groups
    order: dicts of fold, split, `what` ('class' or the focus attribute), value, n, `key`
    (min_clips_per_class or min_clips_per_group) and minimum.

    Classes are counted by strict-majority label (counts.csv `label`), groups of the focus
    attribute over every clip of the split; `min_per_class` / `min_per_group` map split ->
    minimum (params split.min_clips_per_class / split.min_clips_per_group).
    """
    checks = [("label", min_per_class, "class", "min_clips_per_class", None)]
    if focus is not None:
        checks.append((focus, min_per_group, focus, "min_clips_per_group", set(group_names)))
    out = []
    for fold in sorted(set(counts["fold"])):
        for s in SPLITS:
            cell = counts[(counts["fold"] == fold) & (counts["split"] == s)]
            for variable, minima, what, key, only in checks:
                minimum = minima.get(s, 0)
                rows = cell[cell["variable"] == variable]
                for value, n in zip(rows["value"], rows["n"]):
                    if only is not None and value not in only:
                        continue  # an excluded value (e.g. race 'Unknown') has no minimum
                    if n < minimum:
                        out.append({"fold": int(fold), "split": s, "what": what, "value": value,
                                    "n": int(n), "key": key, "minimum": int(minimum)})
    return out


def _shortfall_line(c: dict, note: str = "") -> str:
    n = c["n"]
    return (f"split: fold {c['fold']} {c['split']} has {n} clip{'' if n == 1 else 's'} of {c['what']} "
            f"'{c['value']}', below split.{c['key']}.{c['split']} = {c['minimum']}{note}")


def _skipped_note(skipped: int, labelled: int) -> str:
    return (f"; {skipped} of {labelled} labelled clips were skipped at download (data/corpus/skipped.csv)"
            if skipped else "")


def coverage_error(counts: pd.DataFrame, *, min_per_class: dict, min_per_group: dict,
                   focus: str | None, group_names=(), skipped: int = 0,
                   labelled: int = 0) -> str | None:
    """The first (fold, split, class or group) below its minimum (coverage_shortfalls), as one
    line; None if all pass."""
    short = coverage_shortfalls(counts, min_per_class=min_per_class, min_per_group=min_per_group,
                                focus=focus, group_names=group_names)
    return _shortfall_line(short[0], _skipped_note(skipped, labelled)) if short else None


# corpus.json `corpus` of the corpora whose folds come with the corpus (fairser.corpus.build_user:
# EMO-SUPERB's published splits, a manifest's). CREMA-D's and the surrogate's folds are the
# paper's protocol, which fairser builds and checks.
OWN_FOLDS = ("emo-superb", "manifest")


def sparse_class_mode(corpus: str | Path, on_sparse_class: str) -> str:
    """params split.on_sparse_class resolved: `auto` is warn for a corpus of OWN_FOLDS (by its
    corpus.json), else error (also when corpus.json is absent)."""
    if on_sparse_class not in ("auto", "error", "warn"):
        raise ParamsError(f"split.on_sparse_class is {on_sparse_class!r}; expected auto, error or warn")
    if on_sparse_class != "auto":
        return on_sparse_class
    path = Path(corpus) / "corpus.json"
    kind = json.loads(path.read_text()).get("corpus") if path.is_file() else None
    return "warn" if kind in OWN_FOLDS else "error"


def sparse_class_message(cells: list[dict]) -> str:
    """One line naming the (fold, split, class) cells kept below split.min_clips_per_class (the
    first eight, then how many more), each with its multi-label positives (`positives`), and what
    the metrics do with a class without positives."""
    shown = ", ".join(f"fold {c['fold']} {c['split']} '{c['value']}' {c['n']} (minimum {c['minimum']}, "
                      f"{c['positives']} multi-label positive{'' if c['positives'] == 1 else 's'})"
                      for c in cells[:8])
    more = f" and {len(cells) - 8} more" if len(cells) > 8 else ""
    return (f"split.on_sparse_class warn: the corpus's own folds have {len(cells)} (fold, split, class) "
            f"cell{'' if len(cells) == 1 else 's'} below split.min_clips_per_class (strict-majority "
            f"clips), kept as published: {shown}{more}; a class with no positive in a fold's "
            "multi-label test targets scores F1 0 in that fold's macro-F1 and is left out of its "
            "TPR gap")


def degenerate_cells(folds: pd.DataFrame, clips: pd.DataFrame, actors: pd.DataFrame,
                     skipped: pd.DataFrame, schema: Schema, *, bias: str | None) -> list[dict]:
    """Train (fold, class) cells whose biased data keep no clip of a minority group.

    There a group method (RW, DS, GDRO, GADRO with the bias attribute) misses that group on the
    class. Each cell: fold, class, majority and minority group, clips of the majority kept, and
    minority clips available before and kept after the biasing draw. None when bias is None.
    """
    if bias is None:
        return []
    attrs = clip_attributes(clips, actors, schema)
    attrs["_g"] = _bias_groups(attrs, schema, bias)
    majority = majority_table(attrs, schema, bias)
    usable = attrs[~attrs["file"].isin(set(skipped["file"]))].set_index("file")
    split_of = clips.set_index("file")
    out = []
    for fold in range(1, schema.folds + 1):
        pool = usable[(split_of.loc[usable.index, f"split_{fold}"] == "train").to_numpy()]
        kept = usable.loc[folds.loc[(folds["fold"] == fold) & (folds["split"] == "train"), "file"]]
        for k, name in enumerate(schema.classes):
            major = majority[name]
            n_major = int(((kept["label"] == k) & (kept["_g"] == major)).sum())
            for minor in schema.attribute(bias).groups:
                if minor == major:
                    continue
                n_kept = int(((kept["label"] == k) & (kept["_g"] == minor)).sum())
                if n_major > 0 and n_kept == 0:
                    n_available = int(((pool["label"] == k) & (pool["_g"] == minor)).sum())
                    out.append({"fold": fold, "class": name, "majority": major, "minority": minor,
                                "majority_kept": n_major, "minority_available": n_available,
                                "minority_kept": 0})
    return out


def degenerate_message(cells: list[dict], ratio: float, bias: str = "gender") -> str:
    """One line naming the degenerate cells (the first five, then how many more)."""
    shown = ", ".join(f"fold {c['fold']} {c['class']} ({c['majority_kept']} {c['majority']}, "
                      f"0 of {c['minority_available']} {c['minority']})" for c in cells[:5])
    more = f" and {len(cells) - 5} more" if len(cells) > 5 else ""
    return (f"split.ratio {ratio:g} leaves {len(cells)} train (fold, class) cell"
            f"{'' if len(cells) == 1 else 's'} with no minority-{bias} clip, where RW, DS, GDRO and "
            f"GADRO with {bias} equal ERM: {shown}{more}")


# --- files --------------------------------------------------------------------------------------

def _to_number(df: pd.DataFrame, path: Path, column: str, kind=float) -> pd.Series:
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() | ((values != values.round()) if kind is int else False)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{path}: column '{column}' row {i + 2} is {df[column].iloc[i]!r}; "
                         f"expected {'an integer' if kind is int else 'a number'}")
    return values.astype(kind)


def read_corpus(folder: str | Path, schema: Schema | None = None
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read and check clips.csv, actors.csv and skipped.csv (docs/DESIGN.md) from `folder`.

    Columns follow the schema (default: the folder's schema.json): clips.csv `file, actor`, one
    column per class and `split_1..split_F`; actors.csv `actor` and each attribute's column.
    Returns (clips, actors, skipped) with p as floats and actor ids as ints. Raises InputError
    naming the file, column and first bad row, before any work is done.
    """
    folder = Path(folder)
    schema = schema if schema is not None else load_schema(folder)
    clips_path, actors_path, skipped_path = (
        folder / name for name in ("clips.csv", "actors.csv", "skipped.csv"))
    clips = read_csv(clips_path, ("file", "actor", *schema.classes, *schema.split_columns),
                     keep_default_na=False, dtype=str)
    actors = read_csv(actors_path, ("actor", *dict.fromkeys(a.column for a in schema.attributes)),
                      keep_default_na=False, dtype=str)
    skipped = read_csv(skipped_path, SKIPPED_COLUMNS, keep_default_na=False, dtype=str)

    dup = clips["file"].duplicated()
    if dup.any():
        raise InputError(f"{clips_path}: file {clips['file'][dup].iloc[0]!r} is listed twice")
    for e in schema.classes:
        clips[e] = _to_number(clips, clips_path, e)
        if not clips[e].between(0, 1).all():
            raise InputError(f"{clips_path}: column '{e}' has values outside [0, 1]")
    for c in schema.split_columns:
        bad = ~clips[c].isin(SPLITS)
        if bad.any():
            raise InputError(f"{clips_path}: column '{c}' has {clips[c][bad].iloc[0]!r}; "
                             f"expected one of {', '.join(SPLITS)}")
    clips["actor"] = _to_number(clips, clips_path, "actor", int)

    actors["actor"] = _to_number(actors, actors_path, "actor", int)
    dup = actors["actor"].duplicated()
    if dup.any():
        raise InputError(f"{actors_path}: actor {actors['actor'][dup].iloc[0]} is listed twice")
    speaker_groups(actors, schema, actors_path)  # every value in a group: one line naming the row
    unknown = ~clips["actor"].isin(actors["actor"])
    if unknown.any():
        raise InputError(f"{clips_path}: actor {clips['actor'][unknown].iloc[0]} "
                         f"(file {clips['file'][unknown].iloc[0]}) is not in {actors_path}")
    return clips, actors, skipped


def rule_notes(clips: pd.DataFrame, actors: pd.DataFrame, schema: Schema,
               bias: str | None) -> list[str]:
    """One line per class where the biasing rule cannot apply (a warning, not an error): no clip
    of the class has a strict majority anywhere in the corpus, or all of them are of one group."""
    if bias is None:
        return []
    attrs = clip_attributes(clips, actors, schema)
    groups = _bias_groups(attrs, schema, bias)
    notes = []
    for k, name in enumerate(schema.classes):
        present = sorted({g for g in groups[attrs["label"].to_numpy() == k] if g is not None})
        if not (attrs["label"] == k).any():
            notes.append(f"split.bias {bias}: class '{name}' has no clip with a strict majority of "
                         "votes in the corpus, so it has no single label to skew (it stays in the "
                         "multi-label test targets)")
        elif len(present) < 2:
            notes.append(f"split.bias {bias}: every strict-majority clip of class '{name}' is "
                         f"{present[0] if present else 'of no known group'}, so there is no minority "
                         "group to keep for it")
    return notes


def run(corpus: str | Path, out: str | Path, *, ratio: float, seed: int, bias: str = "gender",
        truth: str | None = None, min_clips_per_class: dict | None = None,
        min_clips_per_group: dict | None = None, on_degenerate: str = "warn",
        on_sparse_class: str = "auto") -> list[str]:
    """The split stage: data/corpus -> data/split/{folds,counts}.csv and coverage.json, atomically.

    `bias`: params split.bias (an attribute of schema.json, or none); `truth`: params idi.truth
    (the focus attribute of the coverage minimums when bias is none). Before anything is written,
    the coverage rules (coverage_shortfalls) raise InputError, and so do degenerate train cells
    (degenerate_cells) when `on_degenerate` is 'error'. A class below split.min_clips_per_class
    is a warning instead when `on_sparse_class` resolves to warn (sparse_class_mode: by default,
    for a corpus whose folds are its own), listed in coverage.json under `sparse_classes` (a key
    written only then). Returns the warnings (also in coverage.json under `warnings`, for the
    reports).
    """
    _check_ratio(ratio)
    if on_degenerate not in ("error", "warn"):
        raise ParamsError(f"split.on_degenerate is {on_degenerate!r}; expected error or warn")
    sparse_mode = sparse_class_mode(corpus, on_sparse_class)
    is_own = sparse_class_mode(corpus, "auto") == "warn"
    schema = load_schema(corpus)
    skew = bias_attribute(schema, bias)
    focus = truth_attribute(schema, bias, truth)
    clips, actors, skipped = read_corpus(corpus, schema)
    folds = fold_table(clips, actors, skipped, schema, bias=skew, ratio=ratio, seed=seed)
    counts = count_table(folds, clips, actors, skipped, schema, focus=focus)
    n_skipped = int(skipped["file"].isin(set(clips["file"])).sum())
    short = coverage_shortfalls(counts, min_per_class=min_clips_per_class or {},
                                min_per_group=min_clips_per_group or {}, focus=focus,
                                group_names=schema.attribute(focus).groups)
    sparse = [c for c in short if c["key"] == "min_clips_per_class"] if sparse_mode == "warn" else []
    stop = [c for c in short if c not in sparse]
    if stop:
        hint = ("; or set split.on_sparse_class: warn to keep the corpus's own folds as they are"
                if stop[0]["key"] == "min_clips_per_class" and is_own else "")
        raise InputError(_shortfall_line(stop[0], _skipped_note(n_skipped, len(clips))) + hint)
    warnings = rule_notes(clips, actors, schema, skew)
    if sparse:
        emotion = counts[counts["variable"] == "emotion"].set_index(["fold", "split", "value"])["n"]
        for c in sparse:  # the metrics' targets are multi-label (p > 1/K): say how many there are
            c["positives"] = int(emotion[(c["fold"], c["split"], c["value"])])
        warnings.append(sparse_class_message(sparse))
    cells = degenerate_cells(folds, clips, actors, skipped, schema, bias=skew)
    if cells:
        message = degenerate_message(cells, ratio, skew)
        if on_degenerate == "error":
            raise InputError(f"{message}; lower split.ratio, or set split.on_degenerate: warn")
        warnings.append(message)
    coverage = {"labelled": len(clips), "skipped": n_skipped, "ratio": ratio, "bias": bias,
                "focus": focus, "min_clips_per_class": min_clips_per_class or {},
                "min_clips_per_group": min_clips_per_group or {},
                "on_degenerate": on_degenerate, "degenerate": cells, "warnings": warnings}
    if sparse:  # only then, so the CREMA-D and surrogate coverage.json stay as they were
        coverage["sparse_classes"] = [{"fold": c["fold"], "split": c["split"], "class": c["value"],
                                       "n": c["n"], "minimum": c["minimum"],
                                       "positives": c["positives"]} for c in sparse]
    with atomic_dir(out) as tmp:
        folds.to_csv(tmp / "folds.csv", index=False)
        counts.to_csv(tmp / "counts.csv", index=False)
        (tmp / "coverage.json").write_text(json.dumps(coverage, indent=2, sort_keys=True) + "\n")
    return warnings
