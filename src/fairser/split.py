"""The 1:20 gender-biased train and dev sets, and the counts behind Tables A2 and A3.

Definitions (../shared/SPEC.md sections 1 and 2):
- multi-label target: y_k = 1 iff p_k > 1/6 (strict);
- single label: the class with a strict majority of votes, c_k / N > 0.5, where the vote share is
  recovered from the smoothed distribution p_k = 0.01 + 0.94 c_k / N;
- majority gender of an emotion: the gender with more strict-majority clips of it over the corpus;
- per fold, per emotion, in train and in dev: keep every majority-gender clip and
  floor(n_majority / ratio) minority-gender clips drawn with a seeded RNG; clips without a strict
  majority leave train and dev; test is untouched.

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

from fairser.cli import InputError
from fairser.config import ParamsError
from fairser.constants import (
    AGE_GROUPS, EMOTIONS, GENDERS, N_FOLDS, RACES, SPLITS, age_group,
)
from fairser.metrics import binarize
from fairser.io import atomic_dir, read_csv

# p is stored rounded (6 decimals in EMO-SUPERB), so c/N recovered from it is off by up to about
# 1e-6; a tie at exactly one half (e.g. 5 of 10 votes) must not count as a majority. 1e-3 is far
# above the rounding error and below the gap to the next share above 1/2 for fewer than 500 votes.
_SHARE_TOLERANCE = 1e-3

SPLIT_COLUMNS = tuple(f"split_{i}" for i in range(1, N_FOLDS + 1))
CLIPS_COLUMNS = ("file", "actor", *EMOTIONS, *SPLIT_COLUMNS)
ACTORS_COLUMNS = ("actor", "sex", "age", "race")
SKIPPED_COLUMNS = ("file", "reason")
# Split name in counts.csv for skipped clips that clips.csv does not list (their fold is unknown).
UNLISTED = "unlisted"


# --- labels -------------------------------------------------------------------------------------

def multi_hot(p) -> np.ndarray:
    """(N, 6) bool multi-label target: y_k = p_k > 1/6, strict (SPEC section 1).

    The ten entries stored as 0.166667 lie just above 1/6 and count positive, as in EMO-SUPERB.
    The rule is the one that binarises predictions (fairser.metrics.binarize).
    """
    return binarize(p).astype(bool)


def vote_share(p) -> np.ndarray:
    """(N, 6) vote shares c_k / N recovered from p_k = 0.01 + 0.94 c_k / N (SPEC section 1)."""
    return (np.asarray(p, dtype=float) - 0.01) / 0.94


def majority_label(p) -> np.ndarray:
    """(N,) int class index with a strict majority of votes (c_k / N > 0.5), -1 where none.

    SPEC section 2, step 1. At most one class can hold more than half of the votes.
    """
    share = vote_share(p)
    if share.ndim != 2 or share.shape[1] != len(EMOTIONS):
        raise ValueError(f"p must have shape (N, {len(EMOTIONS)}), got {share.shape}")
    has = share > 0.5 + _SHARE_TOLERANCE
    return np.where(has.any(axis=1), has.argmax(axis=1), -1)


def label_names(labels) -> np.ndarray:
    """Class names for label indices, '' for -1 (folds.csv's `label` column)."""
    names = np.array([*EMOTIONS, ""], dtype=object)
    return names[np.asarray(labels, dtype=int)]  # -1 picks the trailing ''


def majority_gender_by_emotion(*, labels, genders) -> dict[str, str]:
    """Emotion name -> the gender with more strict-majority clips of it (SPEC section 2, step 2).

    `labels` are majority_label() indices and `genders` the clips' GENDERS names, over the whole
    corpus (every fold sees the same corpus-wide trend). A tie, including an emotion with no
    clips at all, goes to GENDERS[0]: the rule needs one answer, and a tie has no natural one.
    """
    labels = np.asarray(labels)
    genders = np.asarray(genders, dtype=object)
    out = {}
    for k, emotion in enumerate(EMOTIONS):
        n = [int(np.sum((labels == k) & (genders == g))) for g in GENDERS]
        out[emotion] = GENDERS[int(np.argmax(n))]  # argmax takes the first on a tie
    return out


# --- biasing ------------------------------------------------------------------------------------

def _check_ratio(ratio) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not ratio >= 1:
        raise ParamsError(f"split.ratio is {ratio!r}; expected a number >= 1")


def bias_split(*, files, split, labels, genders, majority_gender: dict[str, str], ratio: float,
               seed: int, fold: int = 1) -> np.ndarray:
    """(N,) bool: the clips of one fold kept in the biased data (SPEC section 2, steps 3-4).

    Per emotion, in train and in dev: every clip whose strict-majority label is that emotion and
    whose gender is its majority gender is kept, and floor(n_majority / ratio) of the others
    (minority gender) are drawn without replacement; all of them if there are fewer. Clips with
    no strict majority (label -1) are dropped from train and dev. Every test clip is kept.

    Each (fold, split, emotion) cell draws from its own RNG seeded by (seed, fold, split, emotion)
    over candidates sorted by file name, so the draw depends neither on row order nor on the
    other cells. Ratio 1 keeps as many minority clips as majority ones (all, when fewer).
    """
    _check_ratio(ratio)
    files = np.asarray(files, dtype=object)
    split = np.asarray(split, dtype=object)
    labels = np.asarray(labels, dtype=int)
    genders = np.asarray(genders, dtype=object)
    if not (len(files) == len(split) == len(labels) == len(genders)):
        raise ValueError("files, split, labels and genders must have the same length")
    missing = set(EMOTIONS) - set(majority_gender)
    if missing:
        raise ValueError(f"majority_gender lacks {sorted(missing)}")

    keep = split == "test"
    for s_index, s in enumerate(SPLITS):
        if s == "test":
            continue
        for k, emotion in enumerate(EMOTIONS):
            cell = (split == s) & (labels == k)
            major = cell & (genders == majority_gender[emotion])
            keep |= major
            minor = np.flatnonzero(cell & ~major)
            n_draw = min(int(np.floor(major.sum() / ratio)), len(minor))
            if n_draw == 0:
                continue
            minor = minor[np.argsort(files[minor], kind="stable")]
            # SeedSequence wants non-negative entropy; the modulus maps any int64 seed one-to-one.
            rng = np.random.default_rng([seed % 2**64, fold, s_index, k])
            keep[rng.choice(minor, size=n_draw, replace=False)] = True
    return keep


# --- tables -------------------------------------------------------------------------------------

def clip_attributes(clips: pd.DataFrame, actors: pd.DataFrame) -> pd.DataFrame:
    """Per clip of `clips` (same order): file, gender, race, age group, label index (SPEC 1-2)."""
    by_actor = actors.set_index("actor")
    out = pd.DataFrame({"file": clips["file"].to_numpy()})
    out["gender"] = clips["actor"].map(by_actor["sex"]).to_numpy()
    out["race"] = clips["actor"].map(by_actor["race"]).to_numpy()
    out["age"] = clips["actor"].map(by_actor["age"].map(age_group)).to_numpy()
    out["label"] = majority_label(clips[list(EMOTIONS)].to_numpy())
    return out


def fold_table(clips: pd.DataFrame, actors: pd.DataFrame, skipped: pd.DataFrame, *, ratio: float,
               seed: int) -> pd.DataFrame:
    """folds.csv: `fold, file, split, label` for the biased train/dev sets and every test clip.

    Clips in `skipped` leave every split. The majority gender per emotion comes from every clip
    in `clips`, skipped or not: it is a property of the labels, not of the audio we could use.
    `label` is the strict-majority class name, '' where there is none (test only).
    """
    _check_ratio(ratio)
    attrs = clip_attributes(clips, actors)
    majority = majority_gender_by_emotion(labels=attrs["label"], genders=attrs["gender"])
    usable = ~clips["file"].isin(set(skipped["file"])).to_numpy()
    files = attrs["file"].to_numpy()[usable]
    labels = attrs["label"].to_numpy()[usable]
    genders = attrs["gender"].to_numpy()[usable]
    parts = []
    for fold in range(1, N_FOLDS + 1):
        split = clips[f"split_{fold}"].to_numpy()[usable]
        keep = bias_split(files=files, split=split, labels=labels, genders=genders,
                          majority_gender=majority, ratio=ratio, seed=seed, fold=fold)
        parts.append(pd.DataFrame({"fold": fold, "file": files[keep], "split": split[keep],
                                   "label": label_names(labels[keep])}))
    out = pd.concat(parts, ignore_index=True)
    order = out["split"].map({s: i for i, s in enumerate(SPLITS)})
    out = out.assign(_o=order).sort_values(["fold", "_o", "file"], kind="stable")
    return out.drop(columns="_o").reset_index(drop=True)


def count_table(folds: pd.DataFrame, clips: pd.DataFrame, actors: pd.DataFrame,
                skipped: pd.DataFrame) -> pd.DataFrame:
    """counts.csv: `fold, split, variable, value, n` for every fold and split of `folds`.

    Variables (Tables A2, A3): `label` (strict-majority class: the tables' emotion columns),
    `emotion` (multi-label p > 1/6, a clip counts once per positive class), `label_gender` and
    `emotion_gender` (value 'angry/Female'), `gender`, `race`, `age` (group), and `skipped`
    (value 'total' and one per reason: clips of that split left out by the skip policy; skipped
    clips that clips.csv does not list go under split 'unlisted'). Every category appears, with
    n = 0 where empty, so a fold with an empty split still has its rows.
    """
    attrs = clip_attributes(clips, actors).set_index("file")
    multi = pd.DataFrame(multi_hot(clips[list(EMOTIONS)].to_numpy()), columns=list(EMOTIONS),
                         index=attrs.index)
    races = list(RACES) + sorted(set(actors["race"]) - set(RACES))
    categories = {
        "label": list(EMOTIONS),
        "emotion": list(EMOTIONS),
        "label_gender": [f"{e}/{g}" for e in EMOTIONS for g in GENDERS],
        "emotion_gender": [f"{e}/{g}" for e in EMOTIONS for g in GENDERS],
        "gender": list(GENDERS),
        "race": races,
        "age": list(AGE_GROUPS),
    }
    rows = []
    for fold in range(1, N_FOLDS + 1):
        for s in SPLITS:
            files = folds.loc[(folds["fold"] == fold) & (folds["split"] == s), "file"]
            a = attrs.loc[files]
            m = multi.loc[files]
            lab = a["label"].to_numpy()
            n = {}
            for k, e in enumerate(EMOTIONS):
                n[("label", e)] = int(np.sum(lab == k))
                n[("emotion", e)] = int(m[e].sum())
                for g in GENDERS:
                    is_g = (a["gender"] == g).to_numpy()
                    n[("label_gender", f"{e}/{g}")] = int(np.sum((lab == k) & is_g))
                    n[("emotion_gender", f"{e}/{g}")] = int(np.sum(m[e].to_numpy() & is_g))
            for var, col in (("gender", "gender"), ("race", "race"), ("age", "age")):
                vc = a[col].value_counts()
                for v in categories[var]:
                    n[(var, v)] = int(vc.get(v, 0))
            for var, values in categories.items():
                rows += [(fold, s, var, v, n[(var, v)]) for v in values]
    rows += _skipped_rows(clips, skipped)
    return pd.DataFrame(rows, columns=["fold", "split", "variable", "value", "n"])


def _skipped_rows(clips: pd.DataFrame, skipped: pd.DataFrame) -> list[tuple]:
    """counts.csv rows for skipped clips: per fold and split, 'total' and one per reason."""
    split_of = clips.set_index("file")
    listed = skipped["file"].isin(split_of.index).to_numpy()
    reasons = sorted(set(skipped["reason"]))
    why = skipped["reason"].to_numpy()
    splits = list(SPLITS) + ([UNLISTED] if not listed.all() else [])
    rows = []
    for fold in range(1, N_FOLDS + 1):
        where = np.full(len(skipped), UNLISTED, dtype=object)
        where[listed] = split_of.loc[skipped["file"][listed], f"split_{fold}"].to_numpy()
        for s in splits:
            rows.append((fold, s, "skipped", "total", int(np.sum(where == s))))
            rows += [(fold, s, "skipped", r, int(np.sum((where == s) & (why == r))))
                     for r in reasons]
    return rows


# --- coverage rules (issue 10) -------------------------------------------------------------------

def coverage_error(counts: pd.DataFrame, *, min_per_class: dict, min_per_gender: dict,
                   skipped: int = 0, labelled: int = 0) -> str | None:
    """The first (fold, split, class or gender) below its minimum, as one line; None if all pass.

    Classes are counted by strict-majority label (counts.csv `label`), genders over every clip of
    the split (`gender`); `min_per_class` / `min_per_gender` map split -> minimum (params
    split.min_clips_per_class / split.min_clips_per_gender).
    """
    note = (f"; {skipped} of {labelled} labelled clips were skipped at download (data/corpus/skipped.csv)"
            if skipped else "")
    for fold in range(1, N_FOLDS + 1):
        for s in SPLITS:
            cell = counts[(counts["fold"] == fold) & (counts["split"] == s)]
            for variable, minimum, what, key in (
                    ("label", min_per_class.get(s, 0), "class", "min_clips_per_class"),
                    ("gender", min_per_gender.get(s, 0), "gender", "min_clips_per_gender")):
                rows = cell[cell["variable"] == variable]
                for value, n in zip(rows["value"], rows["n"]):
                    if n < minimum:
                        return (f"split: fold {fold} {s} has {n} clip{'' if n == 1 else 's'} of {what} "
                                f"'{value}', below split.{key}.{s} = {minimum}{note}")
    return None


def degenerate_cells(folds: pd.DataFrame, clips: pd.DataFrame, actors: pd.DataFrame,
                     skipped: pd.DataFrame) -> list[dict]:
    """Train (fold, class) cells whose biased data keep no minority-gender clip.

    There a group method (RW, DS, GDRO, GADRO with gender) sees one group only and trains as ERM
    does on that class. Each cell: fold, class, majority and minority gender, clips of the
    majority kept, and minority clips available before and kept after the biasing draw.
    """
    attrs = clip_attributes(clips, actors)
    majority = majority_gender_by_emotion(labels=attrs["label"], genders=attrs["gender"])
    usable = attrs[~attrs["file"].isin(set(skipped["file"]))].set_index("file")
    split_of = clips.set_index("file")
    out = []
    for fold in range(1, N_FOLDS + 1):
        pool = usable[(split_of.loc[usable.index, f"split_{fold}"] == "train").to_numpy()]
        kept = usable.loc[folds.loc[(folds["fold"] == fold) & (folds["split"] == "train"), "file"]]
        for k, emotion in enumerate(EMOTIONS):
            major = majority[emotion]
            minor = next(g for g in GENDERS if g != major)
            n_major = int(((kept["label"] == k) & (kept["gender"] == major)).sum())
            n_kept = int(((kept["label"] == k) & (kept["gender"] == minor)).sum())
            if n_major > 0 and n_kept == 0:
                n_available = int(((pool["label"] == k) & (pool["gender"] == minor)).sum())
                out.append({"fold": fold, "class": emotion, "majority": major, "minority": minor,
                            "majority_kept": n_major, "minority_available": n_available,
                            "minority_kept": 0})
    return out


def degenerate_message(cells: list[dict], ratio: float) -> str:
    """One line naming the degenerate cells (the first five, then how many more)."""
    shown = ", ".join(f"fold {c['fold']} {c['class']} ({c['majority_kept']} {c['majority']}, "
                      f"0 of {c['minority_available']} {c['minority']})" for c in cells[:5])
    more = f" and {len(cells) - 5} more" if len(cells) > 5 else ""
    return (f"split.ratio {ratio:g} leaves {len(cells)} train (fold, class) cell"
            f"{'' if len(cells) == 1 else 's'} with no minority-gender clip, where RW, DS, GDRO and "
            f"GADRO with gender equal ERM: {shown}{more}")


# --- files --------------------------------------------------------------------------------------

def _to_number(df: pd.DataFrame, path: Path, column: str, kind=float) -> pd.Series:
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() | ((values != values.round()) if kind is int else False)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{path}: column '{column}' row {i + 2} is {df[column].iloc[i]!r}; "
                         f"expected {'an integer' if kind is int else 'a number'}")
    return values.astype(kind)


def read_corpus(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read and check clips.csv, actors.csv and skipped.csv (docs/DESIGN.md) from `folder`.

    Returns (clips, actors, skipped) with p as floats, actor ids and ages as ints. Raises
    InputError naming the file, column and first bad row, before any work is done.
    """
    folder = Path(folder)
    clips_path, actors_path, skipped_path = (
        folder / name for name in ("clips.csv", "actors.csv", "skipped.csv"))
    clips = read_csv(clips_path, CLIPS_COLUMNS, keep_default_na=False, dtype=str)
    actors = read_csv(actors_path, ACTORS_COLUMNS, keep_default_na=False, dtype=str)
    skipped = read_csv(skipped_path, SKIPPED_COLUMNS, keep_default_na=False, dtype=str)

    dup = clips["file"].duplicated()
    if dup.any():
        raise InputError(f"{clips_path}: file {clips['file'][dup].iloc[0]!r} is listed twice")
    for e in EMOTIONS:
        clips[e] = _to_number(clips, clips_path, e)
        if not clips[e].between(0, 1).all():
            raise InputError(f"{clips_path}: column '{e}' has values outside [0, 1]")
    for c in SPLIT_COLUMNS:
        bad = ~clips[c].isin(SPLITS)
        if bad.any():
            raise InputError(f"{clips_path}: column '{c}' has {clips[c][bad].iloc[0]!r}; "
                             f"expected one of {', '.join(SPLITS)}")
    clips["actor"] = _to_number(clips, clips_path, "actor", int)

    actors["actor"] = _to_number(actors, actors_path, "actor", int)
    actors["age"] = _to_number(actors, actors_path, "age", int)
    dup = actors["actor"].duplicated()
    if dup.any():
        raise InputError(f"{actors_path}: actor {actors['actor'][dup].iloc[0]} is listed twice")
    bad = ~actors["sex"].isin(GENDERS)
    if bad.any():
        raise InputError(f"{actors_path}: column 'sex' has {actors['sex'][bad].iloc[0]!r}; "
                         f"expected one of {', '.join(GENDERS)}")
    for age in actors["age"]:
        try:
            age_group(int(age))
        except ValueError as err:
            raise InputError(f"{actors_path}: column 'age': {err}") from None
    unknown = ~clips["actor"].isin(actors["actor"])
    if unknown.any():
        raise InputError(f"{clips_path}: actor {clips['actor'][unknown].iloc[0]} "
                         f"(file {clips['file'][unknown].iloc[0]}) is not in {actors_path}")
    return clips, actors, skipped


def run(corpus: str | Path, out: str | Path, *, ratio: float, seed: int,
        min_clips_per_class: dict | None = None, min_clips_per_gender: dict | None = None,
        on_degenerate: str = "warn") -> list[str]:
    """The split stage: data/corpus -> data/split/{folds,counts}.csv and coverage.json, atomically.

    Before anything is written, the coverage rules (coverage_error) raise InputError, and so do
    degenerate train cells (degenerate_cells) when `on_degenerate` is 'error'. Returns the
    warnings (also in coverage.json under `warnings`, for the reports).
    """
    _check_ratio(ratio)
    if on_degenerate not in ("error", "warn"):
        raise ParamsError(f"split.on_degenerate is {on_degenerate!r}; expected error or warn")
    clips, actors, skipped = read_corpus(corpus)
    folds = fold_table(clips, actors, skipped, ratio=ratio, seed=seed)
    counts = count_table(folds, clips, actors, skipped)
    n_skipped = int(skipped["file"].isin(set(clips["file"])).sum())
    problem = coverage_error(counts, min_per_class=min_clips_per_class or {},
                             min_per_gender=min_clips_per_gender or {}, skipped=n_skipped,
                             labelled=len(clips))
    if problem:
        raise InputError(problem)
    cells = degenerate_cells(folds, clips, actors, skipped)
    warnings = []
    if cells:
        message = degenerate_message(cells, ratio)
        if on_degenerate == "error":
            raise InputError(f"{message}; lower split.ratio, or set split.on_degenerate: warn")
        warnings.append(message)
    coverage = {"labelled": len(clips), "skipped": n_skipped, "ratio": ratio,
                "min_clips_per_class": min_clips_per_class or {},
                "min_clips_per_gender": min_clips_per_gender or {},
                "on_degenerate": on_degenerate, "degenerate": cells, "warnings": warnings}
    with atomic_dir(out) as tmp:
        folds.to_csv(tmp / "folds.csv", index=False)
        counts.to_csv(tmp / "counts.csv", index=False)
        (tmp / "coverage.json").write_text(json.dumps(coverage, indent=2, sort_keys=True) + "\n")
    return warnings
