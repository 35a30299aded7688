"""`fairser audit`: a fairness report for any multi-label emotion model's predictions.

The metrics, per-group rates, speaker bootstrap and intervals are the pipeline's own
(fairser.metrics, fairser.evaluate.evaluate_runs / summarize / bootstrap_interval): the audited
predictions become one run of an `evaluate.Truth`, so `fairser audit` on a pipeline run's
predictions.csv gives that run's Table 1 and 2 numbers. A plain predictions file is one test
"fold"; a pipeline file (columns fold[, seed], file, <classes>) keeps its folds, and every number
is the mean over its (fold, seed) cells, as the pipeline's tables are (every seed of a fold scores
that fold's clips and shares its speaker resamples, as in `evaluate.evaluate_runs`).

What the audit adds on top, per attribute and per requested intersection (e.g. gender x age as a
combined group; a speaker with any part missing is left out of it):
- macro-F1 and Hamming accuracy per group (the same metric functions on the group's clips,
  averaged over cells where the group has clips);
- the per-class breakdown behind each gap: gap_k = max_g TPR_{g,k} - min_g TPR_{g,k} and
  max_g |P(yhat_k | g) - P(yhat_k)| (fairser.metrics), averaged over cells, with the groups behind
  them (lowest and highest fold-mean TPR; selection rate furthest from the overall rate);
- per-group TPR and selection rate with intervals from the same speaker resamples as the gaps
  (`evaluate_runs(..., group_replicates=True)`), basic intervals (RATE_CI_METHOD) clipped to [0, 1];
- speakers per group, with a warning where a group has fewer than MIN_SPEAKERS speakers in some
  fold: one or two speakers cannot show the speaker-to-speaker spread, so their resamples borrow
  it from the larger groups (`evaluate.replicate_group_counts`).

Inputs are read at the edges (`load_*`, from CSV paths or pandas DataFrames); `audit` works on
arrays; `write_report` writes the folder; `audit_predictions` is all three for notebooks (exported as
`fairser.audit_predictions`). Speaker ids and attribute values are folded by `fairser.values` (the
one normalisation the importers share), and the mapping applied is part of the report.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fairser import evaluate, metrics, values  # noqa: E402
from fairser import schema as corpus_schema  # noqa: E402
from fairser.errors import InputError  # noqa: E402
from fairser.io import atomic_dir, read_csv  # noqa: E402

# The defaults live here, not in a params.yaml: the audit runs in any folder (the pipeline's own
# values: params.yaml `seed` 0 and `evaluate.bootstrap` 1000; a threshold of 1/K).
DEFAULT_SEED = 0
DEFAULT_N_BOOT = 1000
DEFAULT_THRESHOLD = "1/K"
DEFAULT_MIN_COVERAGE = 1.0  # every labelled clip must have a prediction unless the user lowers it
MARKER = ".fairser-audit"  # in every report folder: which files the audit wrote there
GENDER_COLUMNS = ("gender", "sex")  # speakers-table columns folded by fairser.values' gender rule
KEEP_VALUES_HINT = "pass --keep-values (keep_values=True) to keep them as groups of their own"

MIN_SPEAKERS = 3  # fewer speakers than this in a group of some cell -> a warning in the report
ID_COLUMNS = ("file", "id")  # the clip id column: the first of these that a table has
SPEAKER_COLUMNS = ("speaker", "actor")  # the speaker column of a speakers table
CELL_COLUMNS = ("fold", "seed")  # the pipeline's predictions.csv has these
UNKNOWN = "Unknown"  # a group value that means missing: left out of that attribute (as race)
INTERSECT_SEP = "+"  # gender+age; Female+Young
PLAIN_FOLD = 1  # the fold number of a file without a fold column
RUN = evaluate.Run("audit", "model", Path("."))
GAPS = ("tpr_gap", "dp_gap")
# Per-group rates are mean-like, not max-min gaps: the pipeline's gap interval (evaluate.CI_METHOD,
# widened against a gap's upward bias) does not apply; the basic interval's coverage for rates is
# simulated in docs/AUDIT.md (benchmarks/audit_coverage.py).
RATE_CI_METHOD = "basic"
ALL_TIED = "all equal"  # the lowest/highest-TPR group when every defined group has the same TPR


# --- inputs -------------------------------------------------------------------------------------

def _where(path, line: int | None = None, column: str | None = None) -> str:
    parts = [str(path)] + ([f"line {line}"] if line is not None else []) + (
        [f"column {column}"] if column is not None else [])
    return ", ".join(parts)


def _frame_as_text(df: pd.DataFrame) -> pd.DataFrame:
    """A caller's DataFrame as the CSV reader would give it: every cell text, missing cells "".

    Floats become their shortest round-trip text, so the numbers are those of the same table
    written to CSV and read back."""
    out = df.reset_index(drop=True)
    out.columns = [str(c) for c in out.columns]
    return out.astype(object).where(out.notna(), "").astype(str)


def _read_table(source, expected: str, what: str) -> tuple[pd.DataFrame, Path | str]:
    """(every cell as text, empty cells "", the name messages use) of a CSV path or a DataFrame.

    A path is read by `fairser.io.read_csv` (a folder, a missing, empty, non-UTF-8 or unparsable
    file is its one InputError naming the file and the `expected` columns); a header without rows
    is one here, since a table the audit reads needs one row per clip."""
    if isinstance(source, pd.DataFrame):
        name = f"{what} DataFrame"
        df = _frame_as_text(source)
    else:
        name = Path(source)
        df = read_csv(name, (), expected=f"a CSV with {expected}", dtype=str, keep_default_na=False)
    if len(df) == 0:
        raise InputError(f"{name}: a header and no rows; expected one row per clip with {expected}")
    return df, name


def _id_column(df: pd.DataFrame, path) -> str:
    for c in ID_COLUMNS:
        if c in df.columns:
            return c
    raise InputError(f"{path}: no clip id column (one of {', '.join(ID_COLUMNS)})")


def _duplicates(df: pd.DataFrame, keys: list[str], path) -> None:
    dup = df.duplicated(keys)
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((df[keys] == df.loc[i, keys]).all(axis=1))[0])
        raise InputError(f"{_where(path, i + 2, keys[-1])}: {df.loc[i, keys[-1]]!r} appears twice "
                         f"(first on line {first + 2})")


def _scores(df: pd.DataFrame, columns: list[str], path, what: str) -> np.ndarray:
    """(n, K) floats in [0, 1]; an empty, non-numeric, NaN or out-of-range cell is an InputError."""
    out = np.empty((len(df), len(columns)))
    for k, c in enumerate(columns):
        values = pd.to_numeric(df[c], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(values) | (values < 0) | (values > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            text = df[c].iloc[i]
            why = ("is empty" if text.strip() == "" else
                   "is not a number" if not np.isfinite(values[i]) else "is outside [0, 1]")
            raise InputError(f"{_where(path, i + 2, c)}: {what} {text!r} {why}")
        out[:, k] = values
    return out


@dataclass
class Predictions:
    classes: list[str]
    cells: list[tuple[int, int]]  # the (fold, seed) pairs of the file, sorted
    files: dict[int, list[str]]  # fold -> clip ids, in the file order of its first seed
    scores: dict[tuple[int, int], np.ndarray]  # (fold, seed) -> (n, K), rows in files[fold] order
    lines: dict[tuple[int, int], np.ndarray]  # (fold, seed) -> (n,) line of each row in the file
    id_column: str
    path: Path
    pipeline: bool  # has a fold column


def _int_column(df: pd.DataFrame, column: str, path) -> np.ndarray:
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{_where(path, i + 2, column)}: {df[column].iloc[i]!r} is not a whole "
                         "number >= 0")
    return values.astype(int)


PREDICTION_COLUMNS = "columns file (or id), one score column per class, optionally fold and seed"
LABEL_COLUMNS = "columns file (or id) and one label column per class of the predictions"
SPEAKER_TABLE_COLUMNS = "columns file (or id), speaker (or actor) and one column per demographic attribute"


def load_predictions(source) -> Predictions:
    """A predictions CSV (path) or DataFrame: a clip id column, optional fold and seed columns, one
    score per class.

    The class set is every other column. Scores are probabilities or 0/1 in [0, 1]. Every seed
    of a fold must score the same clips (as the pipeline's folds: one test split, several seeds).
    """
    df, path = _read_table(source, PREDICTION_COLUMNS, "predictions")
    id_col = _id_column(df, path)
    classes = [c for c in df.columns if c != id_col and c not in CELL_COLUMNS]
    if len(classes) < 2:
        raise InputError(f"{path}: {len(classes)} class column(s) ({', '.join(classes) or 'none'}); "
                         "expected one score column per class, at least two")
    scores = _scores(df, classes, path, "score")
    fold = _int_column(df, "fold", path) if "fold" in df.columns else np.full(len(df), PLAIN_FOLD)
    seed = _int_column(df, "seed", path) if "seed" in df.columns else np.zeros(len(df), int)
    keyed = df.assign(_fold=fold, _seed=seed)
    _duplicates(keyed, ["_fold", "_seed", id_col], path)
    # Folds keep their numbers and seeds share their fold's clips, as in the pipeline: the
    # speaker resamples are seeded by the fold number and serve every training seed of it.
    cells = sorted(set(zip(fold.tolist(), seed.tolist())))
    out = Predictions(classes, cells, {}, {}, {}, id_col, path, "fold" in df.columns)
    for f, s in cells:
        rows = np.flatnonzero((fold == f) & (seed == s))
        ids = df[id_col].iloc[rows].tolist()
        if f not in out.files:
            out.files[f], first_seed = ids, s
        else:
            at, known = {c: i for i, c in enumerate(ids)}, set(out.files[f])
            extra = [i for i, c in enumerate(ids) if c not in known]
            lacking = [c for c in out.files[f] if c not in at]
            if extra or lacking:
                where = (_where(path, int(rows[extra[0]]) + 2, id_col) if extra else str(path))
                clip = ids[extra[0]] if extra else lacking[0]
                raise InputError(f"{where}: fold {f} seed {s} {'has' if extra else 'lacks'} clip "
                                 f"{clip!r}, unlike seed {first_seed} of that fold (every seed of a "
                                 "fold must score the same clips)")
            rows = rows[[at[c] for c in out.files[f]]]  # the fold's first-seed order
        out.scores[(f, s)] = scores[rows]
        out.lines[(f, s)] = rows + 2
    return out


def _is_corpus(source) -> bool:
    """A fairser corpus folder (clips.csv inside); a folder without it is an InputError."""
    if isinstance(source, pd.DataFrame) or not Path(source).is_dir():
        return False
    if not (Path(source) / "clips.csv").is_file():
        raise InputError(f"{source}: a folder without clips.csv, so not a fairser corpus; expected a "
                         "CSV file or a corpus folder")
    return True


@dataclass
class Labels:
    scores: dict[str, np.ndarray]  # clip id -> (K,) label scores in the predictions' class order
    notice: str | None  # a corpus's notice (e.g. the surrogate's)
    usable: list[str]  # the labelled clips a prediction file should cover
    test: dict[int, set[str]]  # corpus folder: fold -> its test clips (clips.csv split_<fold>)

    def expected(self, folds, pipeline: bool) -> list[str]:
        """The labelled clips predictions of these folds should cover: with a corpus's folds,
        the usable test clips of those folds; otherwise every usable labelled clip."""
        if not (pipeline and self.test):
            return self.usable
        wanted = set().union(*(self.test.get(f, set()) for f in folds))
        return [c for c in self.usable if c in wanted]


def load_labels(source, classes: list[str]) -> Labels:
    """clip id -> (K,) label scores (vote shares or 0/1) in `classes` order, and what to cover.

    A table (path or DataFrame): an id column and exactly the classes of the predictions. A fairser
    corpus folder: clips.csv (file, the classes among its columns; its clips listed in skipped.csv
    are not usable) and corpus.json's notice.
    """
    notice, skipped, test = None, set(), {}
    if _is_corpus(source):
        path = Path(source)
        df, table = _read_table(path / "clips.csv", LABEL_COLUMNS, "labels")
        id_col = "file" if "file" in df.columns else _id_column(df, table)
        if (path / "skipped.csv").is_file():
            skipped = set(read_csv(path / "skipped.csv", ["file"], dtype=str, keep_default_na=False)["file"])
        for c in df.columns:
            if re.fullmatch(r"split_\d+", c):
                test[int(c.split("_")[1])] = set(df.loc[df[c] == "test", id_col])
        info = path / "corpus.json"
        if info.is_file():
            try:
                notice = json.loads(info.read_text()).get("notice") or None
            except (json.JSONDecodeError, AttributeError):
                raise InputError(f"{info}: not a JSON object") from None
    else:
        df, table = _read_table(source, LABEL_COLUMNS, "labels")
        id_col = _id_column(df, table)
        extra = [c for c in df.columns if c != id_col and c not in classes]
        if extra:
            raise InputError(f"{_where(table, 1, extra[0])}: not a class of the predictions "
                             f"({', '.join(classes)})")
    missing = [c for c in classes if c not in df.columns]
    if missing:
        raise InputError(f"{_where(table, 1, missing[0])}: class missing from the labels "
                         f"(the predictions have {', '.join(classes)})")
    _duplicates(df, [id_col], table)
    scores = _scores(df, classes, table, "label")
    usable = [c for c in df[id_col] if c not in skipped]
    return Labels(dict(zip(df[id_col], scores)), notice, usable, test)


@dataclass
class Speakers:
    clip_speaker: dict[str, int]  # clip id -> speaker index
    groups: pd.DataFrame  # index 0..S-1: speaker, then one column per attribute (None = missing)
    attributes: list[str]  # the audited ones (groups may hold more: parts of intersections)
    source: dict = field(default_factory=dict)  # attribute -> (table, (S,) line of each speaker, column)
    # What fairser.values changed: rows (attribute, value as written, value used); attribute
    # "speaker" for speaker ids, "<attribute>" for groups (bins included: "age" 25 -> 18-30).
    mapping: list[tuple[str, str, str]] = field(default_factory=list)


def _needed(available: list[str], attributes: list[str] | None, also, path) -> tuple[list[str], list[str]]:
    """(audited attributes, every column to read): unknown names are an InputError."""
    audited = list(available) if attributes is None else list(attributes)
    for flag, names in (("--attributes", audited), ("--intersect", also)):
        unknown = [a for a in names if a not in available]
        if unknown:
            raise InputError(f"{flag}: {unknown[0]!r} is not an attribute of {path} "
                             f"({', '.join(available) or 'none'})")
    if not audited:
        raise InputError(f"{path}: no demographic columns besides the clip id and speaker")
    return audited, list(dict.fromkeys([*audited, *also]))


def _as_schema(schema) -> corpus_schema.Schema | None:
    """A Schema, a schema.json path or a folder holding one (None: none)."""
    if schema is None or isinstance(schema, corpus_schema.Schema):
        return schema
    schema = Path(schema)
    return corpus_schema.load(schema.parent if schema.is_file() else schema)


def _table_groups(a: corpus_schema.Attribute, cells: list, lines, path) -> list:
    """Group names of a speakers-table column by a schema attribute (bins, excluded -> None)."""
    out = []
    excluded = {values.fold(e) for e in a.excluded}
    for v, line in zip(cells, lines):
        if a.edges is not None and values.fold(v) in excluded:  # a missing number, e.g. Unknown
            out.append(None)
            continue
        try:
            out.append(a.group_of(v))
        except ValueError as err:
            raise InputError(f"{_where(path, int(line), a.column)}: {err}") from None
    return out


def bin_attribute(column: str, edges) -> corpus_schema.Attribute:
    """A numeric column binned by `edges` (group i = [edges[i], edges[i+1]), named "lo-hi");
    the value "Unknown" is missing."""
    edges = [float(e) for e in edges]
    names = [f"{lo:g}-{hi:g}" for lo, hi in zip(edges, edges[1:])]
    try:
        return corpus_schema.Attribute(column, column, names, excluded=(UNKNOWN,), edges=edges)
    except InputError as err:
        raise InputError(f"--bins {column}: {err}") from None


def parse_bins(items) -> dict[str, tuple[float, ...]]:
    """`--bins age=18,30,50,100` (repeatable), or a dict {column: edges}, as {column: edges}."""
    if isinstance(items, dict):
        return {str(c): tuple(float(e) for e in edges) for c, edges in items.items()}
    out = {}
    for text in items or ():
        column, _, edges = str(text).partition("=")
        try:
            out[column.strip()] = tuple(float(e) for e in edges.split(","))
        except ValueError:
            column = ""
        if not column.strip() or len(out.get(column.strip(), ())) < 3:
            raise InputError(f"--bins: {text!r} is not COLUMN=EDGE,EDGE,EDGE... (at least three "
                             "increasing numbers), e.g. age=18,30,50,100")
    return out


def _numeric_without_bins(raw: list[str], column: str, path) -> InputError:
    shown = sorted({v.strip() for v in raw if values.fold(v) not in ("", values.fold(UNKNOWN))},
                   key=float)
    sample = ", ".join(shown[:4]) + (", ..." if len(shown) > 4 else "")
    return InputError(f"{_where(path, None, column)}: numeric values ({sample}) need bins, or each "
                      f"value would be a group of its own; pass --bins {column}=EDGE,EDGE,... (e.g. "
                      f"{column}=18,30,50,100: groups [18, 30), [30, 50), [50, 100)) or a corpus folder "
                      "with its schema.json")


def load_speakers(source, attributes: list[str] | None, also=(), schema=None, *, bins=None,
                  keep_values: bool = False) -> Speakers:
    """Each clip's speaker and each speaker's groups.

    A table (path or DataFrame): a clip id column, a speaker column (speaker or actor) and
    demographic columns (all of them are attributes unless `attributes` names some); every clip of
    a speaker must give the same groups. Speaker ids are folded by `values.speaker_id` (`01` and
    `1` are one speaker) and attribute values by `values.normalise` (case, spaces; gender's
    spellings to Male / Female, any other gender value an InputError unless `keep_values`). A
    group value "Unknown" means missing: that speaker is left out of that attribute. A numeric
    column needs `bins` ({column: edges}) or a schema.
    With a `schema` (a corpus schema, or the path of a schema.json or its folder), the attributes
    are the schema's whose column the table has, named and grouped as the pipeline does (numeric
    columns binned by its edges, its `excluded` values missing).
    A fairser corpus folder: clips.csv (file, actor) and actors.csv, read by the corpus's
    schema.json (`schema` or the folder's own) as the pipeline reads them (`evaluate.actor_groups`;
    CREMA-D: gender, race, age bands). `also`: columns read and checked besides the audited ones
    (the parts of intersections).
    """
    schema = _as_schema(schema)
    bins = parse_bins(bins)
    mapping = []
    if _is_corpus(source):
        path = Path(source)
        if bins:
            raise InputError(f"--bins: {path} is a corpus folder, binned by its schema.json; --bins "
                             "is for a speakers table")
        clips_path, actors_path = path / "clips.csv", path / "actors.csv"
        clips, _ = _read_table(clips_path, "columns file and actor", "speakers")
        for c in ("file", "actor"):
            if c not in clips.columns:
                raise InputError(f"{clips_path}: missing column {c}")
        schema = corpus_schema.load(path) if schema is None else schema
        actors = read_csv(actors_path, evaluate.actor_columns(schema), keep_default_na=False,
                          na_values=[""], dtype=str)
        groups = evaluate.actor_groups(actors, schema, actors_path).rename(columns={"actor": "speaker"})
        index = {a: i for i, a in enumerate(groups["speaker"])}
        lost = ~clips["actor"].isin(index)
        if lost.any():
            i = int(np.flatnonzero(lost)[0])
            raise InputError(f"{_where(clips_path, i + 2, 'actor')}: actor {clips['actor'].iloc[i]!r} "
                             f"has no row in {actors_path}")
        _duplicates(clips, ["file"], clips_path)
        audited, needed = _needed(list(schema.attribute_names), attributes, also, path)
        lines = np.arange(len(groups)) + 2
        source_of = {a: (actors_path, lines, schema.attribute(a).column) for a in needed}
        clip_speaker = dict(zip(clips["file"], clips["actor"].map(index)))
    else:
        df, path = _read_table(source, SPEAKER_TABLE_COLUMNS, "speakers")
        id_col = _id_column(df, path)
        spk_col = next((c for c in SPEAKER_COLUMNS if c in df.columns), None)
        if spk_col is None:
            raise InputError(f"{path}: no speaker column (one of {', '.join(SPEAKER_COLUMNS)})")
        _duplicates(df, [id_col], path)
        written = df.copy()  # as in the file, for messages
        ids, changed = values.speaker_ids(df[spk_col].tolist())
        df[spk_col] = ids
        mapping += [("speaker", raw, new) for raw, new in sorted(changed.items())]
        by_name = {} if schema is None else {a.name: a for a in schema.attributes if a.column in df.columns}
        columns = [c for c in df.columns if c not in (id_col, spk_col)]
        unknown_bins = [c for c in bins if c not in columns]
        if unknown_bins:
            raise InputError(f"--bins: {unknown_bins[0]!r} is not a column of {path} "
                             f"({', '.join(columns) or 'none'})")
        audited, needed = _needed(list(by_name) if schema is not None else columns, attributes,
                                  also, path)
        speakers = list(dict.fromkeys(df[spk_col]))  # order of first appearance
        index = {s: i for i, s in enumerate(speakers)}
        first_row = {s: i for i, s in reversed(list(enumerate(df[spk_col])))}
        groups = pd.DataFrame({"speaker": speakers})
        lines = np.array([first_row[s] + 2 for s in speakers])
        source_of = {}
        for a in needed:
            binned = by_name.get(a) or (bin_attribute(a, bins[a]) if a in bins else None)
            c = binned.column if binned is not None else a
            empty = df[c].str.strip() == ""
            if empty.any() and not (binned is not None and "" in binned.excluded):
                i = int(np.flatnonzero(empty)[0])
                raise InputError(f"{_where(path, i + 2, c)}: speaker {written[spk_col].iloc[i]!r} has no {c}")
            if binned is None and values.is_numeric([v for v in df[c] if values.fold(v) != values.fold(UNKNOWN)]):
                raise _numeric_without_bins(df[c].tolist(), c, path)
            if binned is None or binned.edges is None:  # names, not numbers: one spelling per group
                # A column named gender or sex (any case) gets gender's spellings and groups.
                rule = "gender" if values.fold(a) in GENDER_COLUMNS else a
                folded = values.normalise(
                    df[c].tolist(), rule, groups=binned.groups if binned is not None else None,
                    excluded=binned.excluded if binned is not None else (UNKNOWN,),
                    keep_values=keep_values and binned is None, where=_where(path, None, c),
                    hint=KEEP_VALUES_HINT if binned is None else "the schema's groups")
                df[c] = folded.values
                mapping += [(a, raw, new) for raw, new in sorted(folded.mapping.items())]
            first = df[c].to_numpy(object)[[first_row[s] for s in df[spk_col]]]
            clash = df[c].to_numpy(object) != first
            if clash.any():
                i = int(np.flatnonzero(clash)[0])
                j = first_row[df[spk_col].iloc[i]]
                raise InputError(f"{_where(path, i + 2, c)}: speaker {written[spk_col].iloc[i]!r} is "
                                 f"{written[c].iloc[i]!r} here but {written[c].iloc[j]!r} on line {j + 2}")
            speaker_values = [df[c].iloc[first_row[s]] for s in speakers]
            if binned is not None:
                groups[a] = _table_groups(binned, speaker_values, lines, path)
                if binned.edges is not None:
                    mapping += sorted({(a, v, g or UNKNOWN) for v, g in zip(speaker_values, groups[a])})
            else:
                groups[a] = [None if v == UNKNOWN else v for v in speaker_values]
            source_of[a] = (path, lines, c)
        clip_speaker = dict(zip(df[id_col], df[spk_col].map(index)))
    return Speakers(clip_speaker, groups[["speaker", *needed]].reset_index(drop=True), audited,
                    {a: source_of[a] for a in needed}, mapping)


def parse_list(text, what: str) -> list[str] | None:
    """A text such as "a,b" (or a list of names) as a list of distinct names; None stays None."""
    if text is None:
        return None
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else map(str, text))]
    if not all(items) or len(set(items)) != len(items):
        raise InputError(f"{what}: {text!r} is not a comma-separated list of distinct names")
    return items


def parse_threshold(text: str | None, n_classes: int) -> float:
    """'1/K' (the default: EMO-SUPERB's 1/|Y|), a fraction such as '1/3', or a number in (0, 1)."""
    if text is None or text.strip().upper() == "1/K":
        return 1.0 / n_classes
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise InputError(f"--threshold: {text!r} is not 1/K, a fraction or a number") from None
    if not 0 < value < 1:
        raise InputError(f"--threshold: {text!r} is outside (0, 1)")
    return value


def add_intersections(speakers: Speakers, intersect: list[list[str]]) -> list[str]:
    """Add one combined column per intersection (e.g. gender+age: Female+Young); their names."""
    names = []
    for parts in intersect:
        if len(parts) < 2:
            raise InputError(f"--intersect: {INTERSECT_SEP.join(parts)!r} needs two or more "
                             "attributes, e.g. gender,age")
        name = INTERSECT_SEP.join(parts)
        values = speakers.groups[parts].to_numpy(object)
        speakers.groups[name] = [None if any(pd.isna(v) for v in row) else INTERSECT_SEP.join(row)
                                 for row in values]
        table, lines, _ = speakers.source[parts[0]]
        speakers.source[name] = (table, lines, INTERSECT_SEP.join(speakers.source[a][2] for a in parts))
        names.append(name)
    return names


@dataclass
class Inputs:
    """Everything `audit` needs, as arrays: per cell targets, predictions and speakers."""

    classes: list[str]
    attributes: list[str]
    cells: list[tuple[int, int]]  # (fold, seed) pairs
    y_true: dict[int, np.ndarray]  # fold -> (n, K) targets
    y_pred: dict[tuple[int, int], np.ndarray]  # (fold, seed) -> (n, K) predictions, same clip order
    speakers: dict[int, np.ndarray]  # fold -> (n,) speaker index into `groups`
    groups: pd.DataFrame
    threshold: float
    notice: str | None
    described: dict  # the inputs' names and sizes, coverage, for the report
    values: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=VALUES_COLUMNS))


VALUES_COLUMNS = ["attribute", "as_written", "used"]


def _names(source) -> str:
    return f"{source}" if not isinstance(source, pd.DataFrame) else "a DataFrame"


def coverage(expected: list[str], predicted: set[str], clip_speaker: dict[str, int],
             speaker_names) -> dict:
    """How many of the `expected` labelled clips have predictions, and the speakers none of whose
    expected clips do (speakers of the speakers table only)."""
    covered = [c for c in expected if c in predicted]
    lacking = {clip_speaker[c] for c in expected if c not in predicted and c in clip_speaker}
    lacking -= {clip_speaker[c] for c in covered if c in clip_speaker}
    return {"labelled_clips": len(expected), "predicted_clips": len(covered),
            "share": len(covered) / len(expected) if expected else 1.0,
            "missing_speakers": [str(speaker_names[i]) for i in sorted(lacking)]}


def load(*, predictions, labels, speakers, attributes=None, intersect=(), threshold: str | None = None,
         schema=None, bins=None, keep_values: bool = False,
         min_coverage: float = DEFAULT_MIN_COVERAGE) -> Inputs:
    """Read and check every input; InputError (one line: file, line, column) on the first fault.

    predictions, labels, speakers: CSV paths or DataFrames (labels and speakers: also a fairser
    corpus folder). `attributes`: "a,b" or a list; `intersect`: each "a,b" or a list of names.
    `schema`, `bins`, `keep_values`: see `load_speakers`. Fewer labelled clips with predictions than
    `min_coverage` (a share; 1.0: all of them) is an InputError naming the speakers left out.
    """
    pred = load_predictions(predictions)
    k = len(pred.classes)
    cut = parse_threshold(threshold, k)
    wanted = parse_list(attributes, "--attributes")
    if isinstance(intersect, str):
        intersect = [intersect]
    crossings = [parse_list(t, "--intersect") for t in intersect]
    if not 0 <= min_coverage <= 1:
        raise InputError(f"--min-coverage: {min_coverage} is outside [0, 1]")
    truth = load_labels(labels, pred.classes)
    spk = load_speakers(speakers, wanted, also=[a for parts in crossings for a in parts], schema=schema,
                        bins=bins, keep_values=keep_values)
    attrs = spk.attributes + add_intersections(spk, crossings)
    y_true, y_pred, speaker_of = {}, {}, {}
    for fold, files in pred.files.items():
        first = next(c for c in pred.cells if c[0] == fold)
        for name, table, source in (("labels", truth.scores, labels),
                                    ("speakers", spk.clip_speaker, speakers)):
            lost = [i for i, f in enumerate(files) if f not in table]
            if lost:
                i = lost[0]
                raise InputError(f"{_where(pred.path, int(pred.lines[first][i]), pred.id_column)}: clip "
                                 f"{files[i]!r} is not in the {name} ({_names(source)})")
        # Targets: vote shares (or 0/1) > 1/K, the corpus rule; predictions: scores > threshold.
        y_true[fold] = metrics.binarize(np.stack([truth.scores[f] for f in files]), 1.0 / k)
        speaker_of[fold] = np.array([spk.clip_speaker[f] for f in files], dtype=np.int64)
    covered = coverage(truth.expected(sorted(pred.files), pred.pipeline),
                       {f for files in pred.files.values() for f in files}, spk.clip_speaker,
                       spk.groups["speaker"].tolist())
    if covered["share"] < min_coverage:
        missing = covered["missing_speakers"]
        raise InputError(
            f"{pred.path}: predictions for {covered['predicted_clips']} of {covered['labelled_clips']} "
            f"labelled clips ({covered['share']:.1%}) in {_names(labels)}, below --min-coverage "
            f"{min_coverage:g}; speakers without any: {', '.join(missing[:10]) or 'none'}"
            f"{' ...' if len(missing) > 10 else ''} (lower --min-coverage to audit the clips covered)")
    for cell in pred.cells:
        y_pred[cell] = metrics.binarize(pred.scores[cell], cut)
    used = np.zeros(len(spk.groups), bool)
    for s in speaker_of.values():
        used[s] = True
    for a in attrs:
        values_a = spk.groups[a].to_numpy(object)
        present = {v for v, u in zip(values_a, used) if u and not pd.isna(v)}
        for i, v in enumerate(values_a):
            if not pd.isna(v) and v not in present:
                table, lines, column = spk.source[a]
                raise InputError(f"{_where(table, int(lines[i]), column)}: group {v!r} has no clips in "
                                 f"{pred.path}; leave {a} out (--attributes) or add its clips")
        if len(present) < 2:
            raise InputError(f"{_names(speakers)}: attribute {a} has {len(present)} group(s) among the "
                             f"predicted clips; a gap needs two")
    described = {"predictions": str(pred.path), "labels": _names(labels), "speakers": _names(speakers),
                 "n_clips": int(sum(len(f) for f in pred.files.values())),
                 "folds": sorted(pred.files), "pipeline": pred.pipeline,
                 "seeds": sorted({s for _, s in pred.cells}), "coverage": covered}
    return Inputs(pred.classes, attrs, pred.cells, y_true, y_pred, speaker_of, spk.groups, cut,
                  truth.notice, described, pd.DataFrame(spk.mapping, columns=VALUES_COLUMNS))


# --- the audit over arrays -----------------------------------------------------------------------

@dataclass
class Audit:
    summary: pd.DataFrame  # evaluate.summarize rows of the one audited run
    groups: pd.DataFrame  # attribute, group, n_speakers, fewest_speakers, n_clips, f1, acc
    per_class: pd.DataFrame  # attribute, class, tpr_gap, ..., dp, dp_group, ...
    per_group: pd.DataFrame  # attribute, group, class, n_clips, n_pos, tpr (+ CI), selection_rate (+ CI)
    classes: list[str]
    attributes: list[str]
    n_boot: int
    seed: int


def _nanmean(stack) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells are meant to stay NaN
        return np.nanmean(np.stack(stack), axis=0)


def audit(inputs: Inputs, *, n_boot: int, seed: int) -> Audit:
    """Gaps with intervals, per-group scores and rates, and the per-class breakdown.

    Gaps, F1 and ACC: `evaluate.evaluate_runs` + `evaluate.summarize` on one run, so they are
    the pipeline's numbers. Everything per group or per class: the mean over cells of the
    per-cell value, a cell with no clips of that group left out.
    """
    truth = evaluate.Truth(folds=sorted(inputs.y_true), test_files={}, targets=dict(inputs.y_true),
                           speakers=dict(inputs.speakers), actors=inputs.groups)
    per_fold, _, replicates = evaluate.evaluate_runs(
        truth, {RUN: inputs.y_pred}, n_boot=n_boot, seed=seed, attributes=inputs.attributes,
        classes=inputs.classes, group_replicates=True)
    summary = evaluate.summarize(per_fold, replicates)
    n_speakers = len(inputs.groups)
    group_rows, class_rows, rate_rows = [], [], []
    for attribute in inputs.attributes:
        codes, member, names = evaluate.group_matrix(inputs.groups[attribute].to_numpy(object))
        per_cell = {key: [] for key in ("tpr", "sel", "dev", "overall", "gap", "dp", "f1", "acc",
                                        "n", "pos", "spk")}
        spk_sets = [set() for _ in names]
        for fold, t_seed in inputs.cells:
            y, p, spk = inputs.y_true[fold], inputs.y_pred[(fold, t_seed)], inputs.speakers[fold]
            grp = evaluate.group_totals(evaluate.speaker_counts(y_true=y, y_pred=p, speakers=spk,
                                                                n_speakers=n_speakers), member)
            rate = metrics.selection_rate_by_group(sel=grp["sel"], n=grp["n"])
            overall = grp["sel"].sum(axis=0) / grp["n"].sum()
            per_cell["tpr"].append(metrics.tpr_by_group(tp=grp["tp"], pos=grp["pos"]))
            per_cell["sel"].append(rate)
            per_cell["dev"].append(np.abs(rate - overall))
            per_cell["overall"].append(overall)
            per_cell["gap"].append(metrics.tpr_gap_per_class(tp=grp["tp"], pos=grp["pos"]))
            per_cell["dp"].append(metrics.dp_per_class(sel=grp["sel"], n=grp["n"]))
            if t_seed == min(s for f, s in inputs.cells if f == fold):  # clips: once per fold
                per_cell["n"].append(grp["n"])
                per_cell["pos"].append(grp["pos"])
            clip_codes = codes[spk]
            f1s, accs, n_spk = [], [], []
            for g in range(len(names)):
                mine = clip_codes == g
                spk_sets[g].update(spk[mine].tolist())
                n_spk.append(len(set(spk[mine].tolist())) if mine.any() else np.nan)
                f1s.append(metrics.macro_f1(y_true=y[mine], y_pred=p[mine]) if mine.any() else np.nan)
                accs.append(metrics.hamming_accuracy(y_true=y[mine], y_pred=p[mine]) if mine.any()
                            else np.nan)
            per_cell["f1"].append(np.array(f1s))
            per_cell["acc"].append(np.array(accs))
            per_cell["spk"].append(np.array(n_spk, float))
        mean = {key: _nanmean(v) for key, v in per_cell.items() if key not in ("n", "pos", "spk")}
        fewest = np.nanmin(np.stack(per_cell["spk"]), axis=0)
        n_clips = np.sum(per_cell["n"], axis=0)
        n_pos = np.sum(per_cell["pos"], axis=0)
        for g, name in enumerate(names):
            group_rows.append({"attribute": attribute, "group": name, "n_speakers": len(spk_sets[g]),
                               "fewest_speakers": int(fewest[g]), "n_clips": int(n_clips[g]),
                               "f1": float(mean["f1"][g]), "acc": float(mean["acc"][g])})
        tpr_reps = replicates.groups.get((RUN.set, RUN.method, attribute, "tpr_by_group"))
        sel_reps = replicates.groups.get((RUN.set, RUN.method, attribute, "selection_rate_by_group"))
        for k, cls in enumerate(inputs.classes):
            tpr_k, dev_k = mean["tpr"][:, k], mean["dev"][:, k]
            defined = np.isfinite(tpr_k)
            lo = int(np.nanargmin(tpr_k)) if defined.any() else None
            hi = int(np.nanargmax(tpr_k)) if defined.any() else None
            far = int(np.nanargmax(dev_k))
            tie = lo is not None and tpr_k[lo] == tpr_k[hi]  # no group is lowest: say so
            class_rows.append({
                "attribute": attribute, "class": cls, "tpr_gap": float(mean["gap"][k]),
                "lowest_tpr_group": ALL_TIED if tie else names[lo] if lo is not None else None,
                "lowest_tpr": float(tpr_k[lo]) if lo is not None else np.nan,
                "highest_tpr_group": ALL_TIED if tie else names[hi] if hi is not None else None,
                "highest_tpr": float(tpr_k[hi]) if hi is not None else np.nan,
                "dp": float(mean["dp"][k]), "dp_group": names[far],
                "dp_group_rate": float(mean["sel"][far, k]),
                "overall_selection_rate": float(mean["overall"][k])})
            for g, name in enumerate(names):
                row = {"attribute": attribute, "group": name, "class": cls, "n_clips": int(n_clips[g]),
                       "n_pos": int(n_pos[g, k])}
                for key, point, reps in (("tpr", mean["tpr"][g, k], tpr_reps),
                                         ("selection_rate", mean["sel"][g, k], sel_reps)):
                    ci = evaluate.bootstrap_interval(float(point), None if reps is None else reps[:, g, k],
                                                     method=RATE_CI_METHOD, floor=0.0)
                    row.update({key: float(point), f"{key}_ci_low": ci["ci_low"],
                                f"{key}_ci_high": min(ci["ci_high"], 1.0)})  # a rate is <= 1
                rate_rows.append(row)
    return Audit(summary, pd.DataFrame(group_rows), pd.DataFrame(class_rows), pd.DataFrame(rate_rows),
                 list(inputs.classes), list(inputs.attributes), n_boot, seed)


def _summary_row(result: Audit, attribute: str, metric: str) -> pd.Series:
    s = result.summary
    return s[(s["attribute"] == attribute) & (s["metric"] == metric)].iloc[0]


# --- outputs -------------------------------------------------------------------------------------

def _num(x):
    """A JSON number; None for NaN (undefined), never NaN text."""
    x = float(x)
    return None if not np.isfinite(x) else x


def metrics_json(result: Audit, inputs: Inputs) -> dict:
    """Flat keys (so `dvc metrics diff` and scripts can compare two audits), numbers or null.

    overall.{f1,acc,n_clips,n_speakers}; <attribute>.{tpr_gap,dp_gap}[.ci_low|.ci_high];
    <attribute>.group.<group>.{f1,acc,n_clips,n_speakers}; <attribute>.class.<class>.{tpr_gap,dp}.
    """
    out = {"overall.n_clips": inputs.described["n_clips"],
           "overall.n_speakers": int(len({s for v in inputs.speakers.values() for s in v.tolist()}))}
    covered = inputs.described.get("coverage")
    if covered:
        out |= {"coverage.labelled_clips": covered["labelled_clips"],
                "coverage.predicted_clips": covered["predicted_clips"],
                "coverage.share": covered["share"],
                "coverage.missing_speakers": len(covered["missing_speakers"])}
    for metric in ("f1", "acc"):
        out[f"overall.{metric}"] = _num(_summary_row(result, evaluate.ALL_ATTRIBUTE, metric)["mean"])
    for attribute in result.attributes:
        for metric in GAPS:
            row = _summary_row(result, attribute, metric)
            out[f"{attribute}.{metric}"] = _num(row["mean"])
            out[f"{attribute}.{metric}.ci_low"] = _num(row["ci_low"])
            out[f"{attribute}.{metric}.ci_high"] = _num(row["ci_high"])
    for row in result.groups.itertuples(index=False):
        for key in ("f1", "acc", "n_clips", "n_speakers"):
            value = getattr(row, key)
            out[f"{row.attribute}.group.{row.group}.{key}"] = (int(value) if key.startswith("n_")
                                                               else _num(value))
    for row in result.per_class.to_dict("records"):
        out[f"{row['attribute']}.class.{row['class']}.tpr_gap"] = _num(row["tpr_gap"])
        out[f"{row['attribute']}.class.{row['class']}.dp"] = _num(row["dp"])
    return out


def _f(x, digits: int = 3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x + 0.0:.{digits}f}"


def _interval_method(method: str = RATE_CI_METHOD) -> str:
    """The name of an `evaluate.bootstrap_interval` method, as the pipeline's tables print it."""
    from fairser.report import INTERVAL_NAMES

    # The tables' mark for "from 0" (°) is theirs; the audit names the note in words.
    return re.sub(r"\s*\(°\)$", "", INTERVAL_NAMES[method])


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def report_markdown(result: Audit, inputs: Inputs) -> str:
    d = inputs.described
    title = "Fairness audit" + (f" [{inputs.notice}]" if inputs.notice else "")
    if d["folds"] == [PLAIN_FOLD] and not d["pipeline"]:
        cells = "no folds"
    else:
        cells = f"{len(d['folds'])} fold(s)" + (f" x {len(d['seeds'])} training seeds"
                                                if len(d["seeds"]) > 1 else "")
    lines = [f"# {title}", "",
             f"- predictions: `{d['predictions']}` ({d['n_clips']} clips, {cells}); labels: "
             f"`{d['labels']}`; speakers: `{d['speakers']}`",
             f"- classes ({len(result.classes)}): {', '.join(result.classes)}; a prediction is positive "
             f"when its score > {inputs.threshold:.4g}, a target when its label score > 1/K = "
             f"{1 / len(result.classes):.4g}",
             f"- metrics: fairser.metrics (TPR gap = sqrt(mean_k (max_g TPR - min_g TPR)^2); DP gap = "
             "sqrt(mean_k max_g |P(yhat_k | g) - P(yhat_k)|^2)); every number is the mean over the "
             "(fold, seed) cells, as in the pipeline's Tables 1-2",
             (f"- intervals: gaps {_interval_method(evaluate.CI_METHOD)} (the pipeline's, "
              f"docs/STATISTICS.md); per-group rates {_interval_method()}; from {result.n_boot} speaker resamples (speakers drawn "
              "with replacement within their group, per fold, shared by its training seeds; a group "
              f"with fewer than {evaluate.MIN_STRATUM} speakers borrows the spread of the larger "
              f"groups; seed {result.seed}); they cover test-speaker sampling only, and the rate "
              "intervals fall short of 95% when a group has few speakers (simulated coverage: "
              "fairser's docs/AUDIT.md)") if result.n_boot else
             "- intervals: none (--n-boot 0)"]
    covered = d.get("coverage")
    if covered:
        missing = covered["missing_speakers"]
        lines.append(f"- coverage: predictions for {covered['predicted_clips']} of {covered['labelled_clips']} "
                     f"labelled clips ({covered['share']:.1%}); speakers without any prediction: "
                     f"{', '.join(missing) if missing else 'none'}")
    lines += ["", "## Values as read", "",
              "Speaker ids and attribute values as fairser.values folds them (speaker ids: leading zeros "
              "of all-digit ids dropped; values: case and spaces, gender spellings to Male / Female; "
              "numbers: into their bins). Also in values.csv.", ""]
    for name in ["speaker", *dict.fromkeys(a for attr in result.attributes for a in attr.split(INTERSECT_SEP))]:
        rows = inputs.values[inputs.values["attribute"] == name]
        changed = ", ".join(f"{r.as_written!r} -> {r.used}" for r in rows.itertuples(index=False))
        lines.append(f"- {name}: {changed or 'as written'}")
    lines += ["", "## Overall", "", "| Metric | Value |", "|---|---|"]
    for metric, label in (("f1", "macro-F1 ↑"), ("acc", "Hamming accuracy ↑")):
        lines.append(f"| {label} | {_f(_summary_row(result, evaluate.ALL_ATTRIBUTE, metric)['mean'])} |")
    for attribute in result.attributes:
        lines += ["", f"## {attribute.replace(INTERSECT_SEP, ' × ')}", "",
                  "| Gap | Value | 95% interval |", "|---|---|---|"]
        for metric, label in (("tpr_gap", "TPR gap ↓"), ("dp_gap", "DP gap ↓")):
            row = _summary_row(result, attribute, metric)
            note = f" ({row['ci_note']})" if isinstance(row["ci_note"], str) and row["ci_note"] else ""
            lines.append(f"| {label} | {_f(row['mean'])} | [{_f(row['ci_low'])}, {_f(row['ci_high'])}]"
                         f"{note} |")
        groups = result.groups[result.groups["attribute"] == attribute]
        lines += ["", "| Group | Speakers | Clips | macro-F1 | Hamming acc. |", "|---|---|---|---|---|"]
        for g in groups.itertuples(index=False):
            lines.append(f"| {g.group} | {g.n_speakers} | {g.n_clips} | {_f(g.f1)} | {_f(g.acc)} |")
        few = groups[groups["fewest_speakers"] < MIN_SPEAKERS]
        if len(few):
            which = ", ".join(f"{g.group} ({g.fewest_speakers})" for g in few.itertuples(index=False))
            lines += ["", f"> **Warning:** fewer than {MIN_SPEAKERS} speakers in a group of some fold: "
                          f"{which}. So few speakers cannot show how much speakers differ: their "
                          "resamples borrow the spread between speakers of the larger groups (pooled "
                          f"residuals), so the {attribute.replace(INTERSECT_SEP, ' × ')} intervals "
                          "assume these speakers differ as much as the others do."]
        pc = result.per_class[result.per_class["attribute"] == attribute]
        lines += ["", "Per class (the breakdown behind the gaps; with several cells, each gap is the mean "
                      "of the per-cell gaps and the groups are ranked by their mean rate):", "",
                  "| Class | TPR gap | Lowest TPR (group) | Highest TPR (group) | DP | Furthest selection rate "
                  "(group) | Overall selection rate |", "|---|---|---|---|---|---|---|"]
        for r in pc.to_dict("records"):
            low = f"{_f(r['lowest_tpr'])} ({r['lowest_tpr_group']})" if r["lowest_tpr_group"] else "–"
            high = f"{_f(r['highest_tpr'])} ({r['highest_tpr_group']})" if r["highest_tpr_group"] else "–"
            lines.append(f"| {r['class']} | {_f(r['tpr_gap'])} | {low} | {high} | {_f(r['dp'])} | "
                         f"{_f(r['dp_group_rate'])} ({r['dp_group']}) | {_f(r['overall_selection_rate'])} |")
        lines += ["", f"![TPR by group](tpr_{_slug(attribute)}.png) "
                      f"![Selection rate by group](selection_{_slug(attribute)}.png)"]
    lines += ["", "Files: metrics.json (flat keys), per_class.csv (per class and attribute), "
                  "per_group.csv (per group and class, with intervals), values.csv (values as read).", ""]
    return "\n".join(lines)


def _bars(result: Audit, attribute: str, key: str, ylabel: str, title: str, notice: str | None,
          overall: pd.Series | None = None) -> bytes:
    import io

    rates = result.per_group[result.per_group["attribute"] == attribute]
    groups = list(dict.fromkeys(rates["group"]))
    x = np.arange(len(result.classes))
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(result.classes) + 0.4 * len(groups)), 4.2))
    for i, g in enumerate(groups):
        r = rates[rates["group"] == g].set_index("class").loc[result.classes]
        v = r[key].to_numpy(float)
        err = np.abs(np.stack([v - r[f"{key}_ci_low"].to_numpy(float),
                               r[f"{key}_ci_high"].to_numpy(float) - v]))
        at = x - 0.4 + width * (i + 0.5)
        ax.bar(at, v, width, yerr=np.nan_to_num(err), capsize=2, label=g)
        for xk in at[np.isnan(v)]:  # undefined (no positives): not the same as a rate of 0
            ax.text(xk, 0.01, "n/a", rotation=90, ha="center", va="bottom", fontsize=6)
    if overall is not None:
        for k, value in enumerate(overall.to_numpy(float)):
            ax.hlines(value, k - 0.42, k + 0.42, colors="black", linestyles="dashed",
                      label="all clips" if k == 0 else None)
    ax.set_xticks(x, result.classes)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, ncol=min(len(groups) + 1, 6), loc="upper center", bbox_to_anchor=(0.5, -0.1),
              frameon=False)
    ax.set_title(f"{title} [{notice}]" if notice else title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def figures(result: Audit, notice: str | None) -> dict[str, bytes]:
    """tpr_<attribute>.png and selection_<attribute>.png: per class, one bar per group, 95% intervals.

    An undefined TPR (the group has no positives of the class) is marked n/a, not drawn as 0.
    """
    out = {}
    for attribute in result.attributes:
        shown = attribute.replace(INTERSECT_SEP, " × ")
        out[f"tpr_{_slug(attribute)}.png"] = _bars(
            result, attribute, "tpr", "TPR (recall)", f"TPR by {shown} (bars: 95% speaker-bootstrap "
            "interval)", notice)
        pc = result.per_class[result.per_class["attribute"] == attribute].set_index("class")
        out[f"selection_{_slug(attribute)}.png"] = _bars(
            result, attribute, "selection_rate", "P(predicted positive)",
            f"Selection rate by {shown} (DP; dashed: all clips)", notice,
            overall=pc.loc[result.classes, "overall_selection_rate"])
    return out


def _marked_files(folder: Path) -> set[str] | None:
    """The files the audit's marker says it wrote into `folder`; None without a readable marker."""
    try:
        listed = json.loads((folder / MARKER).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {str(f) for f in listed} if isinstance(listed, list) else None


def check_out(out, *, force: bool = False) -> Path:
    """The report folder `out`, if the audit may (re)place it; one-line InputError otherwise.

    Refused whatever `force`: an empty name, the working folder or a folder above it, a file, a
    path under a file. Without `force`, an existing folder is replaced only when it is empty or
    holds nothing but what the audit's marker (MARKER) lists as written by an earlier audit.
    """
    text = "" if out is None else str(out)
    if text.strip() == "":
        raise InputError("--out: empty; name a folder for the report, e.g. --out audit")
    path = Path(text)
    here = Path.cwd().resolve()
    if path.resolve() == here or path.resolve() in here.parents:
        raise InputError(f"--out {text}: the working folder or one above it would be replaced; name a "
                         "folder for the report, e.g. --out audit")
    if path.exists() and not path.is_dir():
        raise InputError(f"--out {text}: a file, not a folder; choose another folder")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise InputError(f"--out {text}: {blocking} is a file, not a folder; choose another folder")
    if path.is_dir() and not force:
        present = {p.name for p in path.iterdir()}
        written = _marked_files(path)
        if present and (written is None or not present <= written | {MARKER}):
            raise InputError(f"--out {text} holds files the audit did not write; choose another folder "
                             "or pass --force")
    return path


def write_report(result: Audit, inputs: Inputs, out: str | Path, *, force: bool = False) -> None:
    """report.md, metrics.json, per_class.csv, per_group.csv, values.csv, the figures and the
    marker, in one atomic folder that replaces `out` (only as `check_out` allows)."""
    out = check_out(out, force=force)
    pngs = figures(result, inputs.notice)  # drawn first: a failure leaves `out` untouched
    text = report_markdown(result, inputs)
    with atomic_dir(out) as tmp:
        (tmp / "report.md").write_text(text)
        (tmp / "metrics.json").write_text(json.dumps(metrics_json(result, inputs), indent=2,
                                                     sort_keys=True) + "\n")
        result.per_class.to_csv(tmp / "per_class.csv", index=False)
        result.per_group.to_csv(tmp / "per_group.csv", index=False)
        inputs.values.to_csv(tmp / "values.csv", index=False)
        for name, data in pngs.items():
            (tmp / name).write_bytes(data)
        files = sorted(p.name for p in tmp.iterdir())
        (tmp / MARKER).write_text(json.dumps({"written_by": "fairser audit", "files": files}, indent=2) + "\n")


# --- the Python API ------------------------------------------------------------------------------

@dataclass
class AuditReport:
    """What `audit_predictions` returns: the numbers `fairser audit` writes, as DataFrames.

    overall: metric (f1, acc), value. gaps: attribute, metric (tpr_gap, dp_gap), value, ci_low,
    ci_high, ci_note. groups: per attribute and group (speakers, clips, f1, acc). per_class: per
    attribute and class (tpr_gap, lowest/highest TPR groups, dp, ...). per_group: per attribute,
    group and class (tpr, selection_rate, their intervals). values: the spellings fairser.values
    changed. coverage: labelled clips, those predicted, their share, speakers without any.
    metrics: metrics.json's flat keys.
    """

    overall: pd.DataFrame
    gaps: pd.DataFrame
    groups: pd.DataFrame
    per_class: pd.DataFrame
    per_group: pd.DataFrame
    values: pd.DataFrame
    coverage: dict
    metrics: dict
    result: Audit
    inputs: Inputs

    def markdown(self) -> str:
        """report.md's text."""
        return report_markdown(self.result, self.inputs)

    def write(self, out: str | Path, *, force: bool = False) -> None:
        """The console's report folder (`write_report`: never over files it did not write)."""
        write_report(self.result, self.inputs, out, force=force)


def audit_predictions(predictions, labels, speakers, *, attributes=None, intersect=(),
                      threshold: str | float = DEFAULT_THRESHOLD, bins=None, keep_values: bool = False,
                      min_coverage: float = DEFAULT_MIN_COVERAGE, n_boot: int = DEFAULT_N_BOOT,
                      seed: int = DEFAULT_SEED, schema=None) -> AuditReport:
    """`fairser audit` for notebooks: the same inputs (DataFrames, CSV paths or corpus folders),
    checks, defaults and numbers, returned as DataFrames instead of written.

    attributes: "gender,age" or a list; intersect: a list of "gender,age" or of name lists;
    threshold: "1/K" (default), a fraction or a number in (0, 1); bins: {column: edges} or
    ["age=18,30,50,100"]; the rest as the command's flags (`fairser audit --help`).
    """
    if n_boot < 0:
        raise InputError(f"--n-boot: {n_boot} is negative")
    inputs = load(predictions=predictions, labels=labels, speakers=speakers, attributes=attributes,
                  intersect=intersect, threshold=str(threshold),
                  schema=schema, bins=bins, keep_values=keep_values, min_coverage=min_coverage)
    result = audit(inputs, n_boot=n_boot, seed=seed)
    s = result.summary
    overall = s[s["attribute"] == evaluate.ALL_ATTRIBUTE][["metric", "mean"]].rename(columns={"mean": "value"})
    gaps = s[s["metric"].isin(GAPS) & (s["attribute"] != evaluate.ALL_ATTRIBUTE)]
    gaps = gaps[["attribute", "metric", "mean", "ci_low", "ci_high", "ci_note"]].rename(columns={"mean": "value"})
    return AuditReport(overall.reset_index(drop=True), gaps.reset_index(drop=True), result.groups,
                       result.per_class, result.per_group, inputs.values,
                       dict(inputs.described["coverage"]), metrics_json(result, inputs), result, inputs)
