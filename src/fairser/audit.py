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

Inputs are read at the edges (`load_*`); `audit` works on arrays; `write_report` writes the folder.
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

from fairser import evaluate, metrics  # noqa: E402
from fairser import schema as corpus_schema  # noqa: E402
from fairser.errors import InputError  # noqa: E402
from fairser.io import atomic_dir, read_csv  # noqa: E402

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


def _read_table(path: Path) -> pd.DataFrame:
    """Every cell as text (so a bad cell can be named), empty cells as ""."""
    return read_csv(path, [], dtype=str, keep_default_na=False)


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


def load_predictions(path: str | Path) -> Predictions:
    """A predictions CSV: a clip id column, optional fold and seed columns, one score per class.

    The class set is every other column. Scores are probabilities or 0/1 in [0, 1]. Every seed
    of a fold must score the same clips (as the pipeline's folds: one test split, several seeds).
    """
    path = Path(path)
    df = _read_table(path)
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


def _is_corpus(path: Path) -> bool:
    return path.is_dir()


def load_labels(path: str | Path, classes: list[str]) -> tuple[dict[str, np.ndarray], str | None]:
    """clip id -> (K,) label scores (vote shares or 0/1) in `classes` order; the corpus notice.

    A table: an id column and exactly the classes of the predictions. A fairser corpus folder:
    clips.csv (file, the classes among its columns) and corpus.json's notice.
    """
    path = Path(path)
    notice = None
    if _is_corpus(path):
        table = path / "clips.csv"
        df = _read_table(table)
        id_col = "file" if "file" in df.columns else _id_column(df, table)
        info = path / "corpus.json"
        if info.is_file():
            try:
                notice = json.loads(info.read_text()).get("notice") or None
            except (json.JSONDecodeError, AttributeError):
                raise InputError(f"{info}: not a JSON object") from None
    else:
        table = path
        df = _read_table(table)
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
    values = _scores(df, classes, table, "label")
    return dict(zip(df[id_col], values)), notice


@dataclass
class Speakers:
    clip_speaker: dict[str, int]  # clip id -> speaker index
    groups: pd.DataFrame  # index 0..S-1: speaker, then one column per attribute (None = missing)
    attributes: list[str]  # the audited ones (groups may hold more: parts of intersections)
    source: dict = field(default_factory=dict)  # attribute -> (table, (S,) line of each speaker, column)


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


def _table_groups(a: corpus_schema.Attribute, values: list, lines, path) -> list:
    """Group names of a speakers-table column by a schema attribute (bins, excluded -> None)."""
    out = []
    for v, line in zip(values, lines):
        try:
            out.append(a.group_of(v))
        except ValueError as err:
            raise InputError(f"{_where(path, int(line), a.column)}: {err}") from None
    return out


def load_speakers(path: str | Path, attributes: list[str] | None, also=(), schema=None) -> Speakers:
    """Each clip's speaker and each speaker's groups.

    A table: a clip id column, a speaker column (speaker or actor) and demographic columns (all
    of them are attributes unless `attributes` names some); every clip of a speaker must give the
    same groups. A group value "Unknown" means missing: that speaker is left out of that attribute.
    With a `schema` (a corpus schema, or the path of a schema.json or its folder), the attributes
    are the schema's whose column the table has, named and grouped as the pipeline does (numeric
    columns binned by its edges, its `excluded` values missing).
    A fairser corpus folder: clips.csv (file, actor) and actors.csv, read by the corpus's
    schema.json (`schema` or the folder's own) as the pipeline reads them (`evaluate.actor_groups`;
    CREMA-D: gender, race, age bands). `also`: columns read and checked besides the audited ones
    (the parts of intersections).
    """
    path = Path(path)
    schema = _as_schema(schema)
    if _is_corpus(path):
        clips_path, actors_path = path / "clips.csv", path / "actors.csv"
        clips = _read_table(clips_path)
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
        source = {a: (actors_path, lines, schema.attribute(a).column) for a in needed}
        clip_speaker = dict(zip(clips["file"], clips["actor"].map(index)))
    else:
        df = _read_table(path)
        id_col = _id_column(df, path)
        spk_col = next((c for c in SPEAKER_COLUMNS if c in df.columns), None)
        if spk_col is None:
            raise InputError(f"{path}: no speaker column (one of {', '.join(SPEAKER_COLUMNS)})")
        _duplicates(df, [id_col], path)
        by_name = {} if schema is None else {a.name: a for a in schema.attributes if a.column in df.columns}
        columns = [c for c in df.columns if c not in (id_col, spk_col)]
        audited, needed = _needed(list(by_name) if schema is not None else columns, attributes,
                                  also, path)
        speakers = list(dict.fromkeys(df[spk_col]))  # order of first appearance
        index = {s: i for i, s in enumerate(speakers)}
        first = df.drop_duplicates(spk_col).set_index(spk_col)
        groups = pd.DataFrame({"speaker": speakers})
        lines = np.array([int(np.flatnonzero(df[spk_col].to_numpy() == s)[0]) + 2 for s in speakers])
        source = {}
        for a in needed:
            c = by_name[a].column if a in by_name else a
            empty = df[c].str.strip() == ""
            if empty.any() and not (a in by_name and "" in by_name[a].excluded):
                i = int(np.flatnonzero(empty)[0])
                raise InputError(f"{_where(path, i + 2, c)}: speaker {df[spk_col].iloc[i]!r} has no {c}")
            clash = df[c].to_numpy() != df[spk_col].map(first[c]).to_numpy()
            if clash.any():
                i = int(np.flatnonzero(clash)[0])
                raise InputError(f"{_where(path, i + 2, c)}: speaker {df[spk_col].iloc[i]!r} is "
                                 f"{df[c].iloc[i]!r} here but {first[c][df[spk_col].iloc[i]]!r} on an "
                                 "earlier line")
            values = list(first[c].loc[speakers])
            groups[a] = (_table_groups(by_name[a], values, lines, path) if a in by_name
                         else [None if v == UNKNOWN else v for v in values])
            source[a] = (path, lines, c)
        clip_speaker = dict(zip(df[id_col], df[spk_col].map(index)))
    return Speakers(clip_speaker, groups[["speaker", *needed]].reset_index(drop=True), audited,
                    {a: source[a] for a in needed})


def parse_list(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
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
    described: dict


def load(*, predictions, labels, speakers, attributes: str | None = None,
         intersect: list[str] = (), threshold: str | None = None, schema=None) -> Inputs:
    """Read and check every input; InputError (one line: file, line, column) on the first fault.

    `schema`: see `load_speakers` (a corpus folder brings its own schema.json)."""
    pred = load_predictions(predictions)
    k = len(pred.classes)
    cut = parse_threshold(threshold, k)
    wanted = parse_list(attributes, "--attributes")
    crossings = [parse_list(t, "--intersect") for t in intersect]
    truth_scores, notice = load_labels(labels, pred.classes)
    spk = load_speakers(speakers, wanted, also=[a for parts in crossings for a in parts], schema=schema)
    attrs = spk.attributes + add_intersections(spk, crossings)
    y_true, y_pred, speaker_of = {}, {}, {}
    for fold, files in pred.files.items():
        first = next(c for c in pred.cells if c[0] == fold)
        for name, table, source in (("labels", truth_scores, labels),
                                    ("speakers", spk.clip_speaker, speakers)):
            lost = [i for i, f in enumerate(files) if f not in table]
            if lost:
                i = lost[0]
                raise InputError(f"{_where(pred.path, int(pred.lines[first][i]), pred.id_column)}: clip "
                                 f"{files[i]!r} is not in the {name} ({source})")
        # Targets: vote shares (or 0/1) > 1/K, the corpus rule; predictions: scores > threshold.
        y_true[fold] = metrics.binarize(np.stack([truth_scores[f] for f in files]), 1.0 / k)
        speaker_of[fold] = np.array([spk.clip_speaker[f] for f in files], dtype=np.int64)
    for cell in pred.cells:
        y_pred[cell] = metrics.binarize(pred.scores[cell], cut)
    used = np.zeros(len(spk.groups), bool)
    for s in speaker_of.values():
        used[s] = True
    for a in attrs:
        values = spk.groups[a].to_numpy(object)
        present = {v for v, u in zip(values, used) if u and not pd.isna(v)}
        for i, v in enumerate(values):
            if not pd.isna(v) and v not in present:
                table, lines, column = spk.source[a]
                raise InputError(f"{_where(table, int(lines[i]), column)}: group {v!r} has no clips in "
                                 f"{pred.path}; leave {a} out (--attributes) or add its clips")
        if len(present) < 2:
            raise InputError(f"{speakers}: attribute {a} has {len(present)} group(s) among the "
                             f"predicted clips; a gap needs two")
    described = {"predictions": str(pred.path), "labels": str(labels), "speakers": str(speakers),
                 "n_clips": int(sum(len(f) for f in pred.files.values())),
                 "folds": sorted(pred.files), "pipeline": pred.pipeline,
                 "seeds": sorted({s for _, s in pred.cells})}
    return Inputs(pred.classes, attrs, pred.cells, y_true, y_pred, speaker_of, spk.groups, cut,
                  notice, described)


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
             "- intervals: none (--n-boot 0)",
             "", "## Overall", "", "| Metric | Value |", "|---|---|"]
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
                  "per_group.csv (per group and class, with intervals).", ""]
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


def write_report(result: Audit, inputs: Inputs, out: str | Path) -> None:
    """report.md, metrics.json, per_class.csv, per_group.csv and the figures, in one atomic folder."""
    pngs = figures(result, inputs.notice)  # drawn first: a failure leaves `out` untouched
    text = report_markdown(result, inputs)
    with atomic_dir(out) as tmp:
        (tmp / "report.md").write_text(text)
        (tmp / "metrics.json").write_text(json.dumps(metrics_json(result, inputs), indent=2,
                                                     sort_keys=True) + "\n")
        result.per_class.to_csv(tmp / "per_class.csv", index=False)
        result.per_group.to_csv(tmp / "per_group.csv", index=False)
        for name, data in pngs.items():
            (tmp / name).write_bytes(data)
