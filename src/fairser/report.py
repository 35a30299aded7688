"""Tables 1-2 and Figs. 2-4 of the paper from data/eval/summary.csv (docs/PROTOCOL.md section 6).

Table 1's fairness columns and the figures are of one attribute (`schema.truth_attribute`; the
paper: gender); Table 2's rows are every other attribute of the corpus schema (CREMA-D: race,
age), and a corpus with one attribute has no Table 2.

Tables hold mean +- s.d. over folds x training seeds and, for gaps and gains, the speaker-
bootstrap interval of fairser.evaluate (named by its method, its simulated coverage in each
column's header, footnoted where a cell needs it), and Table 1 the paired t-test over folds
against ERM, Holm-adjusted over the rows (docs/STATISTICS.md). Figures are drawn with
matplotlib's Agg backend (no display needed). Every title carries the corpus notice
(constants.SURROGATE_NOTICE for the generated corpus), so a figure from synthetic data cannot be
mistaken for the paper's.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from fairser.method_sets import EXTENSION_GROUP_METHODS  # noqa: E402
from fairser.debias import REGISTRY  # noqa: E402
from fairser.evaluate import (ALL_ATTRIBUTE, CI_METHOD, GAIN_UNDEFINED, GAP_METRICS,  # noqa: E402
                              MIN_STRATUM, SCORE_METRICS, TABLE2_KS, Lookup, holm, kmeans_set,
                              sweep_ks)

NAMES = {"erm": "ERM", "random": "Random", "lff": "LfF", "disent": "DisEnt", "pgdro": "PGDRO",
         "jtt": "JTT", "george": "GEORGE",
         "adv": "ADV", "eopp": "EOPP", "mmd": "MMD", "mixup": "MIXUP", "dfr": "DFR", "afr": "AFR",
         "ds": "DS", "rw": "RW", "gdro": "GDRO", "gadro": "GADRO", "overall": "Overall"}
METRIC_NAMES = {"f1": "F1 ↑", "acc": "ACC ↑", "tpr_gap": "TPR gap ↓", "dp_gap": "DP gap ↓"}
TABLE1_METRICS = SCORE_METRICS + GAP_METRICS
PAPER_ORDER = ("ds", "rw", "gdro", "gadro")  # row order of the paper's Tables 1-2 and Fig. 2
TSNE_PERPLEXITY = 40  # paper Table A1
TSNE_SEED = 42
FIG4_K = 16  # paper Fig. 4
FIG4_FOLD = 5
# Simulated coverage of the intervals the tables print, by (attribute, gap): (gaps, gains), the
# range over the scenarios of docs/STATISTICS.md (benchmarks/gap_ci_coverage.py: planted and null
# populations; --gains: a method with half of ERM's group effects and one with all of them, over
# the draws whose gain is defined). CREMA-D's attributes at its test sizes; others not simulated.
SIMULATED_COVERAGE = {
    ("gender", "tpr_gap"): ("0.92–0.93", "0.88–0.91"),
    ("gender", "dp_gap"): ("0.94–0.96", "0.83–0.87"),
    ("race", "tpr_gap"): ("0.91–0.96", "0.50–0.63"),
    ("race", "dp_gap"): ("0.95", "0.49–0.74"),
    ("age", "tpr_gap"): ("0.92–0.97", "0.33–0.74"),
    ("age", "dp_gap"): ("0.93–0.96", "0.33–0.71"),
}
# The paired test against ERM (`evaluate.paired_test`) and its simulated false-positive rate at
# 0.05 (benchmarks/significance.py: 10 000 null draws per fold share 0-0.9, s.e. 0.002).
PAIRED_TEST_TEXT = ("two-sided paired t-test over folds (scipy.stats.ttest_1samp of the per-fold "
                    "mean of row − ERM, training seeds averaged within a fold, since the seeds of "
                    "a fold share its test speakers)")
PAIRED_TEST_FPR = "0.048–0.054"
OLD_TEST_FPR = "0.05–0.26"


def titled(title: str, notice: str | None) -> str:
    """`title`, with the corpus notice appended when there is one."""
    return f"{title} [{notice}]" if notice else title


def _attr(metric: str, attribute: str) -> str:
    return ALL_ATTRIBUTE if metric in SCORE_METRICS else attribute


def _cells(look: Lookup, run_set: str, method: str, metric: str, attribute: str, prefix: str) -> dict:
    """The value of one table cell and what its footnotes need: s.d., interval, how many
    (fold, seed) values it averages, the interval's note, the fewest test speakers of a group
    (gaps) and the paired test against ERM."""
    row = look.row(run_set, method, attribute, metric)
    fields = {"": "mean", "_std": "std", "_ci_low": "ci_low", "_ci_high": "ci_high", "_n": "n_values",
              "_n_folds": "n_folds", "_note": "ci_note", "_min_speakers": "min_speakers",
              "_p": "p_vs_erm", "_n_pairs": "n_pairs"}
    out = {}
    for suffix, column in fields.items():
        value = np.nan if row is None or column not in row.index else row[column]
        if suffix == "_note":
            value = "" if pd.isna(value) else str(value)
        out[prefix + suffix] = value
    return out


def _levels(k: int) -> list[tuple[str, str]]:
    return [("gender", "ground truth"), ("pseudo", "pseudo"), (kmeans_set(k), f"k-means K={k}")]


def table1(summary: pd.DataFrame, *, k: int, attribute: str) -> pd.DataFrame:
    """Table 1 (gaps of `attribute`; the paper: gender), the paper's rows: ERM, Random, LfF, DisEnt, PGDRO; DS, RW, GDRO, GADRO at
    ground truth, pseudo and k-means (K = k); Overall and Gain per supervision level.

    Columns: kind (run, overall, gain), method, supervision, then per metric (f1, acc, tpr_gap,
    dp_gap) the value, `_std`, `_ci_low`, `_ci_high`, `_p` (paired test against ERM) and `_p_holm`
    (Holm-adjusted over the rows but Gain). Gain rows hold relative gains vs ERM.
    Rows whose run is absent are left out.
    """
    look = Lookup(summary)
    rows = []

    def add(kind, method, run_set, supervision, suffix=""):
        cells = {}
        for metric in TABLE1_METRICS:
            cells.update(_cells(look, run_set, method, metric + suffix, _attr(metric, attribute), metric))
        if not all(np.isnan(cells[m]) for m in TABLE1_METRICS):
            rows.append({"kind": kind, "method": "Gain" if suffix else NAMES[method],
                         "supervision": supervision, **cells})

    # JTT and GEORGE: group-free peers beyond the paper (issue 13), in the baselines set.
    for method, supervision in (("erm", "none"), ("random", "none"), ("lff", "unsupervised"),
                                ("disent", "unsupervised"), ("jtt", "unsupervised"),
                                ("george", "unsupervised"), ("afr", "unsupervised")):
        add("run", method, "baselines", supervision)
    add("run", "pgdro", "pseudo", "pseudo")
    for method in PAPER_ORDER + EXTENSION_GROUP_METHODS:  # issue 24's after the paper's
        for run_set, supervision in _levels(k):
            add("run", method, run_set, supervision)
    for run_set, supervision in _levels(k):
        add("overall", "overall", run_set, supervision)
    for run_set, supervision in _levels(k):
        add("gain", "overall", run_set, supervision, suffix="_gain")
    df = pd.DataFrame(rows)
    # Holm over the rows tested (not Gain rows, which repeat their Overall row's p), per metric.
    tested = (df["kind"] != "gain") if len(df) else []
    for metric in TABLE1_METRICS:
        if f"{metric}_p" in df.columns:
            df[f"{metric}_p_holm"] = np.nan
            df.loc[tested, f"{metric}_p_holm"] = holm(df.loc[tested, f"{metric}_p"].astype(float))
    return df


# Which paper text PAPER_TABLE1 is typed from (docs/PROTOCOL.md section 9): the first arXiv version.
PAPER_VERSION = "arXiv 2505.14449v1"
PAPER_VERSION_NOTE = (f"The paper's numbers are those of its first version, {PAPER_VERSION} (Overall "
                      "TPR-gap gains +33.3% with pseudo-labels, +26.4% with k-means); a later version "
                      "states gains of \"over 28%\" and \"over 4.6%\" instead (docs/PROTOCOL.md).")
# The paper's Table 1 (gender, mean of 5 folds, CREMA-D, WavLM Base+, k-means K = 16), typed from
# its text: (method, supervision) -> (F1, ACC, TPR gap, DP gap). Gain rows are relative gains.
PAPER_TABLE1 = {
    ("ERM", "none"): (0.651, 0.824, 0.278, 0.103),
    ("Random", "none"): (0.360, 0.509, 0.060, 0.015),
    ("LfF", "unsupervised"): (0.655, 0.825, 0.268, 0.099),
    ("DisEnt", "unsupervised"): (0.653, 0.825, 0.261, 0.094),
    ("PGDRO", "pseudo"): (0.643, 0.817, 0.318, 0.121),
    ("DS", "ground truth"): (0.598, 0.804, 0.094, 0.033),
    ("DS", "pseudo"): (0.580, 0.811, 0.137, 0.045),
    ("DS", "k-means"): (0.561, 0.755, 0.201, 0.100),
    ("RW", "ground truth"): (0.646, 0.823, 0.171, 0.061),
    ("RW", "pseudo"): (0.647, 0.826, 0.197, 0.071),
    ("RW", "k-means"): (0.642, 0.817, 0.237, 0.091),
    ("GDRO", "ground truth"): (0.627, 0.796, 0.199, 0.086),
    ("GDRO", "pseudo"): (0.632, 0.807, 0.229, 0.088),
    ("GDRO", "k-means"): (0.639, 0.803, 0.228, 0.104),
    ("GADRO", "ground truth"): (0.621, 0.788, 0.185, 0.084),
    ("GADRO", "pseudo"): (0.631, 0.807, 0.229, 0.088),
    ("GADRO", "k-means"): (0.638, 0.804, 0.223, 0.098),
    ("Overall", "ground truth"): (0.630, 0.808, 0.162, 0.054),
    ("Overall", "pseudo"): (0.631, 0.816, 0.185, 0.059),
    ("Overall", "k-means"): (0.624, 0.801, 0.205, 0.076),
    ("Gain", "ground truth"): (-0.0328, -0.0192, 0.4191, 0.4790),
    ("Gain", "pseudo"): (-0.0302, -0.0095, 0.3333, 0.4239),
    ("Gain", "k-means"): (-0.0422, -0.0271, 0.2644, 0.2654),
}


def paper_overall_from_rows(level: str) -> tuple:
    """The mean of the paper's DS, RW, GDRO and GADRO rows at `level` (F1, ACC, TPR gap, DP gap).

    The paper's printed Overall rows differ from this mean (k-means: TPR gap 0.205 printed,
    0.222 from the rows; DP gap 0.076 printed, 0.098 from the rows), so both are shown."""
    rows = [PAPER_TABLE1[(NAMES[m], level)] for m in PAPER_ORDER]
    return tuple(float(np.mean(col)) for col in zip(*rows))


def paper_gain_from_rows(level: str) -> tuple:
    """The paper's Gain recomputed from `paper_overall_from_rows` and its ERM row (as we compute ours)."""
    from fairser.evaluate import gain

    erm, overall = PAPER_TABLE1[("ERM", "none")], paper_overall_from_rows(level)
    return tuple(float(gain(o, e, m)) for o, e, m in zip(overall, erm, TABLE1_METRICS))


def table1_vs_paper_markdown(df: pd.DataFrame, *, k: int, notice: str | None,
                             differences: list[str] | None = None) -> str:
    """The paper's Table 1 beside ours, row for row (means only; k-means rows: paper K = 16).

    Overall and Gain rows show the paper's printed value and, in parentheses, the value
    recomputed from its own DS/RW/GDRO/GADRO rows (`paper_overall_from_rows`).
    `differences`: how this run's setup differs from the paper's (fairser.provenance)."""
    title = titled(f"Table 1 beside the paper's, {PAPER_VERSION} (ours: k-means K = {k}; paper: K = 16 "
                   "on CREMA-D)", notice)
    head = ["Method", "Super."] + [f"{h} paper / ours" for h in ("F1", "ACC", "TPR gap", "DP gap")]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for _, row in df.iterrows():
        supervision = "k-means" if row["supervision"].startswith("k-means") else row["supervision"]
        paper = PAPER_TABLE1.get((row["method"], supervision))
        gain = row["kind"] == "gain"
        recomputed = None
        if row["kind"] == "overall":
            recomputed = paper_overall_from_rows(supervision)
        elif gain:
            recomputed = paper_gain_from_rows(supervision)
        show = (lambda v: "–" if pd.isna(v) else f"{v + 0.0:+.1%}") if gain else (
            lambda v: "–" if pd.isna(v) else f"{v:.3f}")
        cells = []
        for i, metric in enumerate(TABLE1_METRICS):
            ours, theirs = row[metric], (paper[i] if paper else np.nan)
            text = show(theirs)
            if recomputed is not None:
                text += f" (rows: {show(recomputed[i])})"
            cells.append(f"{text} / {show(ours)}")
        lines.append(f"| {row['method']} | {row['supervision']} | " + " | ".join(cells) + " |")
    diffs = list(differences or [])
    if k != 16:
        diffs.append(f"k-means rows: ours K = {k}; paper K = 16")
    setup = ("Differences from the paper's setup:\n\n" + "".join(f"- {d}\n" for d in diffs) if diffs
             else "Same corpus and models as the paper.\n")
    return (f"# {title}\n\n{PAPER_VERSION_NOTE} Means over folds (ours: over folds and training "
            "seeds, see reports/table1.md). The paper's numbers are typed from its text (OCR); the paper "
            "states no model revisions, so even the same hub ids may differ. Compare orderings and "
            "gains where the setups differ, not values. The paper's printed Overall rows are not the "
            "mean of its own DS, RW, GDRO and GADRO rows (e.g. k-means TPR gap 0.205 printed, 0.222 "
            "from the rows); Overall and Gain show the printed value and, as \"rows:\", the mean of "
            "its rows and the gain from that mean, which is how ours are computed. Compare our gains "
            "with both.\n\n" + setup + "\n" + "\n".join(lines) + "\n")


def not_paper_markdown(schema, attribute: str, notice: str | None) -> str:
    """table1_vs_paper.md of a corpus unlike the paper's: one line saying why there is no comparison."""
    return titled(f"No comparison with the paper's Table 1: it is CREMA-D's six classes with gender "
                  f"gaps; this corpus has {len(schema.classes)} classes ({', '.join(schema.classes)}) "
                  f"and Table 1 reports {attribute}.", notice) + "\n"


def table2(summary: pd.DataFrame, attributes) -> pd.DataFrame:
    """Table 2: the gaps of `attributes` (every attribute but Table 1's; CREMA-D: race and age,
    G = 3 each) of the k-means runs at K = 16 and 32, with ERM, Overall (mean of the four
    methods) and Gain rows. Columns: kind, method, k, f1, acc, then <attribute>_tpr_gap,
    <attribute>_dp_gap per attribute (each with _std, _ci_low, _ci_high).
    """
    look = Lookup(summary)
    ks = [k for k in TABLE2_KS if kmeans_set(k) in look.sets()]
    cols = [("f1", ALL_ATTRIBUTE, "f1"), ("acc", ALL_ATTRIBUTE, "acc")] + [
        (m, a, f"{a}_{m}") for a in attributes for m in GAP_METRICS]
    rows = []

    def add(kind, method, run_set, k, suffix=""):
        cells = {}
        for metric, attribute, name in cols:
            cells.update(_cells(look, run_set, method, metric + suffix, attribute, name))
        if not all(np.isnan(cells[name]) for _, _, name in cols):
            rows.append({"kind": kind, "method": "Gain" if suffix else NAMES[method], "k": k, **cells})

    add("run", "erm", "baselines", None)
    for method in PAPER_ORDER:
        for k in ks:
            add("run", method, kmeans_set(k), k)
    for k in ks:
        add("overall", "overall", kmeans_set(k), k)
    for k in ks:
        add("gain", "overall", kmeans_set(k), k, suffix="_gain")
    return pd.DataFrame(rows)


# Footnote marks of a cell (`_fmt`) and the footnotes that explain them (`_footnotes`).
MARKS = {"few": "†", "zero-width": "‡", "excludes estimate": "§", "no gap not rejected": "°",
         GAIN_UNDEFINED: "¶"}
INTERVAL_NAMES = {"percentile": "percentile", "basic": "basic (reverse percentile)",
                  "shifted": "percentile shifted by twice the bootstrap bias",
                  "bca": "BCa (jackknife acceleration over speakers)",
                  "widened": "basic, widened by one more bootstrap bias on the side of the bias "
                             "and stretched to hold the estimate; from 0 where a permutation test "
                             "cannot tell the gap from noise (°)"}


def _fmt(row, name: str, gain: bool, total: int | None = None) -> str:
    value = row[name]
    if pd.isna(value) and gain and row.get(f"{name}_note", "") == GAIN_UNDEFINED:
        return "undefined" + MARKS[GAIN_UNDEFINED]
    if pd.isna(value):
        return "–"
    text = f"{value + 0.0:+.1%}" if gain else f"{value:.3f}"  # + 0.0: no "-0.0%"
    if not gain and not pd.isna(row.get(f"{name}_std", np.nan)):
        text += f" ± {row[f'{name}_std']:.3f}"
    if not pd.isna(row.get(f"{name}_ci_low", np.nan)):
        lo, hi = row[f"{name}_ci_low"], row[f"{name}_ci_high"]
        text += (f" [{lo + 0.0:+.1%}, {hi + 0.0:+.1%}]" if gain else f" [{lo:.3f}, {hi:.3f}]")
        marks = MARKS.get(row.get(f"{name}_note", ""), "")
        if row.get(f"{name}_min_speakers", np.nan) < MIN_STRATUM:
            marks = MARKS["few"] + marks
        text += marks
    n = row.get(f"{name}_n", np.nan)
    if total is not None and not pd.isna(n) and int(n) < total:
        text += f" (n = {int(n)} of {total})"
    return text


def _p(value) -> str:
    if pd.isna(value):
        return "–"
    return f"{value:.2g}" if value >= 0.001 else "<0.001"


def markdown_table(df: pd.DataFrame, columns: list[tuple[str, str]], values: list[tuple[str, str]],
                   *, total: int | None = None, p_columns=()) -> str:
    """A GitHub Markdown table: `columns` are (field, header) shown as is, `values` formatted
    (`_fmt`; a cell averaging fewer than `total` (fold, seed) values says so), `p_columns`
    (header, fields) p-values joined by " / " (blank in Gain rows)."""
    head = [h for _, h in columns] + [h for _, h in values] + [h for h, _ in p_columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for _, row in df.iterrows():
        shown = ["" if pd.isna(row[f]) else str(int(row[f]) if isinstance(row[f], float) else row[f])
                 for f, _ in columns]
        shown += [_fmt(row, f, row["kind"] == "gain", total) for f, _ in values]
        shown += ["" if row["kind"] == "gain" else " / ".join(_p(row.get(f, np.nan)) for f in fields)
                  for _, fields in p_columns]
        lines.append("| " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def _footnotes(df: pd.DataFrame, names: list[str], speakers_note: str = "") -> str:
    """The footnotes of the marks that occur in the table's cells."""
    used = {k: False for k in MARKS}
    for name in names:
        if f"{name}_note" in df.columns:
            for key in ("zero-width", "excludes estimate", "no gap not rejected", GAIN_UNDEFINED):
                used[key] |= bool((df[f"{name}_note"] == key).any())
        if f"{name}_min_speakers" in df.columns:
            used["few"] |= bool((df[f"{name}_min_speakers"] < MIN_STRATUM).any())
    text = {
        "few": (f"{MARKS['few']} a group has fewer than {MIN_STRATUM} test speakers in some fold"
                f"{speakers_note}: its resamples borrow the spread between speakers of the larger "
                "groups (pooled residuals, docs/STATISTICS.md), since a lone speaker redrawn as "
                "itself would show none."),
        "zero-width": (f"{MARKS['zero-width']} zero-width interval: every resample gave the same "
                       "value (e.g. each group is a single speaker, or every rate is 0 or 1), so "
                       "it shows that the bootstrap saw no variation, not that the value is certain."),
        "excludes estimate": (f"{MARKS['excludes estimate']} the interval does not hold the "
                              "estimate: a gap's estimate is biased upward by sampling noise, and "
                              "the interval, aimed at the population gap, is moved down by the "
                              "bootstrap's estimate of that bias (docs/STATISTICS.md)."),
        "no gap not rejected": (f"{MARKS['no gap not rejected']} a permutation test (group labels "
                                "shuffled among each fold's test speakers) does not tell this gap "
                                "from the gap that noise alone gives (p > 0.05), so the interval "
                                "starts at 0."),
        GAIN_UNDEFINED: (f"{MARKS[GAIN_UNDEFINED]} undefined: ERM's own gap interval holds 0, so a "
                         "gain relative to it divides by a gap not told from noise; the ratio is "
                         "unstable and its interval could exclude 0 all the same, so no number "
                         "is shown (docs/STATISTICS.md)."),
    }
    lines = [text[k] for k, on in used.items() if on]
    return ("\n" + "\n\n".join(lines) + "\n") if lines else ""


def _spread_text(n_folds: int, n_seeds: int) -> str:
    seeds = f" × {n_seeds} training seeds" if n_seeds > 1 else ", one training seed"
    return (f"Mean ± s.d. over {n_folds} folds{seeds} ({n_folds * n_seeds} values per cell; a cell "
            "with fewer defined values says how many)")


def _interval_text() -> str:
    return (f"[speaker-bootstrap interval aimed at 95%, {INTERVAL_NAMES[CI_METHOD]}] for gaps and "
            "gains; each gap column's header gives the coverage simulated for its gaps and for the "
            "gains in it (benchmarks/gap_ci_coverage.py, docs/STATISTICS.md), below 95% in places")


def gap_header(name: str, attribute: str, metric: str) -> str:
    """A gap column's header with the simulated coverage of its intervals (SIMULATED_COVERAGE)."""
    cover = SIMULATED_COVERAGE.get((attribute, metric))
    if cover is None:
        return f"{name} (coverage not simulated)"
    return f"{name} (coverage: gaps {cover[0]}, gains {cover[1]})"


def table1_markdown(df: pd.DataFrame, *, k: int, n_folds: int, n_seeds: int = 1,
                    notice: str | None, attribute: str, speakers: pd.DataFrame | None = None) -> str:
    title = titled(f"Table 1: SER performance and {attribute} fairness (k-means rows: K = {k})", notice)
    n_tested = (int(df.loc[df["kind"] != "gain", "tpr_gap_p"].notna().sum())
                if "tpr_gap_p" in df.columns else 0)
    return (f"# {title}\n\n{_spread_text(n_folds, n_seeds)}; {_interval_text()}. Gain: relative to "
            "ERM, (x − ERM)/ERM for F1 and ACC, (ERM − x)/ERM for gaps, so positive is better. "
            f"Overall: mean of DS, RW, GDRO, GADRO. p vs ERM: {PAIRED_TEST_TEXT}, "
            f"{n_folds} folds, for the TPR gap and F1, Holm-adjusted over the {n_tested} rows "
            f"tested per column; simulated false-positive rate at 0.05 (unadjusted) "
            f"{PAIRED_TEST_FPR} with fold effects, seed noise and clustered speakers at CREMA-D's "
            f"fold sizes (the Wilcoxon over (fold, seed) pairs used before: {OLD_TEST_FPR}). It "
            "has no floor (any p > 0 can occur; below 0.001 is printed <0.001), but with "
            f"{n_folds} units small effects go unseen: power in docs/STATISTICS.md.\n\n"
            + markdown_table(df, [("method", "Method"), ("supervision", "Super.")],
                             [(m, gap_header(METRIC_NAMES[m], attribute, m) if m in GAP_METRICS
                               else METRIC_NAMES[m]) for m in TABLE1_METRICS],
                             total=n_folds * n_seeds,
                             p_columns=[("p vs ERM, Holm (TPR gap / F1)",
                                         ("tpr_gap_p_holm", "f1_p_holm"))])
            + _footnotes(df, list(TABLE1_METRICS), few_speakers_text(speakers, attribute)))


def few_speakers_text(speakers: pd.DataFrame | None, attribute: str) -> str:
    """e.g. " (race: Asian 1 in folds 1, 2, 3; none in fold 5)" from data/eval/test_speakers.csv."""
    if speakers is None or speakers.empty:
        return ""
    part = speakers[(speakers["attribute"] == attribute) & (speakers["n_speakers"] < MIN_STRATUM)]
    if part.empty:
        return ""
    bits = []
    for (group, n), rows in part.groupby(["group", "n_speakers"]):
        folds = ", ".join(str(int(f)) for f in sorted(rows["fold"]))
        bits.append(f"{group} {'none' if n == 0 else int(n)} in fold{'s' if len(rows) > 1 else ''} {folds}")
    return f" ({attribute}: " + "; ".join(bits) + ")"


def _and(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _excluded_text(attributes) -> str:
    """What each attribute with excluded values leaves out (CREMA-D: race's one Unknown actor)."""
    bits = []
    for a in attributes:
        if a.excluded == ("Unknown",):
            bits.append(f" {a.name.capitalize()} leaves out the actor of unknown {a.name}.")
        elif a.excluded:
            bits.append(f" {a.name.capitalize()} leaves out the speakers whose {a.column} is "
                        f"{' or '.join(repr(v) for v in a.excluded)}.")
    return "".join(bits)


def no_table2_markdown(truth: str, notice: str | None) -> str:
    """reports/table2.md of a corpus whose only attribute is Table 1's: one line saying so."""
    return titled(f"No Table 2: the corpus has one demographic attribute ({truth}), which Table 1 "
                  "reports; Table 2 covers the others (so there is no table2.csv).", notice) + "\n"


def table2_markdown(df: pd.DataFrame, *, n_folds: int, n_seeds: int = 1, notice: str | None,
                    attributes, speakers: pd.DataFrame | None = None) -> str:
    """`attributes`: Table 2's, as schema.Attribute (their groups and excluded values)."""
    attributes = list(attributes)
    sizes = [len(a.groups) for a in attributes]
    g = (f"G = {sizes[0]}" + (" each" if len(sizes) > 1 else "") if len(set(sizes)) == 1
         else "G = " + ", ".join(map(str, sizes)))
    title = titled(f"Table 2: unsupervised IDI (k-means) on {_and(a.name for a in attributes)} ({g})",
                   notice)
    values = [("f1", "F1 ↑"), ("acc", "ACC ↑")]
    for a in attributes:
        values += [(f"{a.name}_tpr_gap", gap_header(f"{a.name.capitalize()} TPR gap ↓", a.name, "tpr_gap")),
                   (f"{a.name}_dp_gap", gap_header(f"{a.name.capitalize()} DP gap ↓", a.name, "dp_gap"))]
    missing = "" if df["k"].notna().any() else (
        f"No k-means runs at K = {' or '.join(map(str, TABLE2_KS))} (idi.k_sweep): ERM only.\n\n")
    few = "".join(few_speakers_text(speakers, a.name) for a in attributes)
    speaker_line = (f"Test groups with fewer than {MIN_STRATUM} speakers in a fold:{few}; a gap over "
                    "such a group rests on one or two voices.\n\n") if few else ""
    return (f"# {title}\n\n{_spread_text(n_folds, n_seeds)}; {_interval_text()}."
            f"{_excluded_text(attributes)} Gain: Overall relative to ERM, positive is better.\n\n"
            + speaker_line + missing
            + markdown_table(df, [("method", "Model"), ("k", "K")], values, total=n_folds * n_seeds)
            + _footnotes(df, [v for v, _ in values], few))


def sweep_frame(summary: pd.DataFrame, *, attribute: str) -> pd.DataFrame:
    """Per K of the sweep and per method (and `mean` = Overall): f1, acc, tpr_gap, dp_gap (of `attribute`)
    with their s.d. over folds x seeds. The data of Figs. 2-3 and plots/k_sweep.csv."""
    look = Lookup(summary)
    rows = []
    for k in sweep_ks(summary):
        for method in PAPER_ORDER + ("overall",):
            row = {"k": k, "method": "mean" if method == "overall" else method}
            for metric in TABLE1_METRICS:
                r = look.row(kmeans_set(k), method, _attr(metric, attribute), metric)
                row[metric] = np.nan if r is None else r["mean"]
                row[f"{metric}_std"] = np.nan if r is None else r["std"]
            rows.append(row)
    return pd.DataFrame(rows)


def tradeoff_frame(summary: pd.DataFrame, *, attribute: str) -> pd.DataFrame:
    """One row per run: set, method, supervision, f1, acc, tpr_gap, dp_gap (of `attribute`):
    plots/tradeoff.csv."""
    look = Lookup(summary)
    runs = summary[summary["method"] != "overall"][["set", "method"]].drop_duplicates()
    rows = []
    for run_set, method in runs.itertuples(index=False):
        supervision = {"baselines": "none" if method in ("erm", "random") else "unsupervised",
                       "gender": "ground truth", "pseudo": "pseudo"}.get(run_set, run_set.replace(
                           "kmeans_k", "k-means K="))
        row = {"set": run_set, "method": NAMES[method], "supervision": supervision}
        for metric in TABLE1_METRICS:
            row[metric] = look.mean(run_set, method, _attr(metric, attribute), metric)
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["set", "method"]).reset_index(drop=True)


# --- the fairness-accuracy trade-off of Table 1 (issue 24) ------------------------------------
# Family of each method: `REGISTRY[name].taxonomy` where a Method sets it; until every one does,
# this mapping of the methods that predate the attribute (Random is no Method: a baseline).
FAMILIES = {"erm": "baseline", "random": "baseline", "rw": "pre-processing", "ds": "pre-processing",
            "gdro": "DRO", "gadro": "DRO", "pgdro": "DRO", "lff": "biased learner",
            "disent": "biased learner", "jtt": "biased learner", "george": "biased learner"}
FAMILY_MARKERS = {"baseline": "o", "pre-processing": "s", "regularisation": "P", "adversarial": "^",
                  "augmentation": "D", "biased learner": "v", "DRO": "X", "last-layer": "*"}
SPARE_MARKERS = ("h", "p", "<", ">", "8", "d")  # a family not listed above, in order of appearance
# Colour per supervision of the groups a method trains on; "none" = no group labels at all
# (ERM, Random and the group-free methods Table 1 marks "unsupervised").
SUPERVISION_COLOURS = {"none": "tab:gray", "ground truth": "tab:blue", "pseudo": "tab:orange",
                       "k-means": "tab:green"}
TRADEOFF_COLUMNS = ["method", "supervision", "family", "groups", "f1", "f1_ci_low", "f1_ci_high",
                    "tpr_gap", "tpr_gap_ci_low", "tpr_gap_ci_high", "pareto"]


def method_family(name: str) -> str:
    """The family of method `name` (a REGISTRY key): its Method's `taxonomy` when set, else FAMILIES,
    else "other"."""
    taxonomy = getattr(REGISTRY.get(name), "taxonomy", None)
    return taxonomy or FAMILIES.get(name, "other")


def supervision_kind(supervision: str) -> str:
    """Table 1's supervision label as one of SUPERVISION_COLOURS' keys ("k-means K=16" -> "k-means",
    "unsupervised" -> "none": those methods use no group labels); any other label as it is."""
    if supervision.startswith("k-means"):
        return "k-means"
    return "none" if supervision in ("none", "unsupervised") else supervision


def pareto_front(f1, gap) -> np.ndarray:
    """(n,) bool: the points no other point dominates, maximising F1 and minimising the gap.

    Point j dominates point i when f1_j >= f1_i and gap_j <= gap_i with one of them strict, so
    equal points are both on the front. A point with a NaN value is on no front and dominates none."""
    f1, gap = np.asarray(f1, dtype=float), np.asarray(gap, dtype=float)
    ok = np.isfinite(f1) & np.isfinite(gap)
    front = ok.copy()
    for i in np.flatnonzero(ok):
        others = ok & (f1 >= f1[i]) & (gap <= gap[i]) & ((f1 > f1[i]) | (gap < gap[i]))
        front[i] = not others.any()
    return front


def tradeoff_points(t1: pd.DataFrame) -> pd.DataFrame:
    """One row per method row of Table 1 (`table1`'s kind "run"; Overall and Gain summarise rows
    and are left out): TRADEOFF_COLUMNS, the intervals as evaluate gives them (NaN where it has
    none) and `pareto` (on the F1 / TPR gap front). plots/tradeoff_table1.csv."""
    keys = {shown: key for key, shown in NAMES.items()}
    runs = t1[t1["kind"] == "run"]
    out = pd.DataFrame({
        "method": runs["method"].to_numpy(),
        "supervision": runs["supervision"].to_numpy(),
        "family": [method_family(keys.get(m, m.lower())) for m in runs["method"]],
        "groups": [supervision_kind(s) for s in runs["supervision"]],
    })
    for column in TRADEOFF_COLUMNS[4:-1]:
        out[column] = runs[column].to_numpy(dtype=float) if column in runs.columns else np.nan
    out["pareto"] = pareto_front(out["f1"], out["tpr_gap"])
    return out[TRADEOFF_COLUMNS]


def tradeoff_axes(points: pd.DataFrame, *, attribute: str, notice: str | None):
    """The trade-off figure of `tradeoff_points`: x = TPR gap of `attribute`, y = macro F1; marker
    per family, colour per supervision; each interval evaluate has drawn as a bar from its low to
    its high end (a gap's interval need not hold the estimate: docs/STATISTICS.md); the Pareto
    front (max F1, min gap) as a dashed staircase through its points, each ringed. Returns the
    matplotlib Figure (artists carry gids: "point", "interval", "pareto")."""
    fig, ax = plt.subplots(figsize=(11, 7.5))
    shown = points[np.isfinite(points["f1"]) & np.isfinite(points["tpr_gap"])]
    markers = dict(FAMILY_MARKERS)
    for family in shown["family"]:
        if family not in markers:
            markers[family] = SPARE_MARKERS[(len(markers) - len(FAMILY_MARKERS)) % len(SPARE_MARKERS)]
    colours = {g: SUPERVISION_COLOURS.get(g, "tab:purple") for g in shown["groups"]}
    for row in shown.itertuples(index=False):
        x, y = row.tpr_gap, row.f1
        for lo, hi, horizontal in ((row.tpr_gap_ci_low, row.tpr_gap_ci_high, True),
                                   (row.f1_ci_low, row.f1_ci_high, False)):
            if np.isfinite(lo) and np.isfinite(hi):
                xs, ys = ([lo, hi], [y, y]) if horizontal else ([x, x], [lo, hi])
                ax.plot(xs, ys, color=colours[row.groups], alpha=0.6, linewidth=1.2,
                        marker="|" if horizontal else "_", markersize=6, gid="interval", zorder=2)
        ax.scatter([x], [y], marker=markers[row.family], color=colours[row.groups], s=60,
                   edgecolors="black", linewidths=0.5, gid="point", zorder=3)
    front = shown[shown["pareto"]].sort_values(["tpr_gap", "f1"])
    if len(front):
        ax.plot(front["tpr_gap"], front["f1"], drawstyle="steps-post", linestyle="--",
                color="black", linewidth=1, gid="pareto", zorder=1)
        ax.scatter(front["tpr_gap"], front["f1"], s=170, facecolors="none", edgecolors="black",
                   linewidths=0.8, zorder=2)
    _label_points(ax, shown["tpr_gap"].to_numpy(), shown["f1"].to_numpy(), list(shown["method"]))
    ax.set_xlabel(f"TPR gap ({attribute}) ↓  (bars: speaker-bootstrap interval aimed at 95%, as Table 1)",
                  fontsize=11)
    ax.set_ylabel("macro F1 ↑", fontsize=11)
    ax.grid(alpha=0.3)
    # Legends in the fixed orders above (families and supervisions present only), then any new ones.
    families = [f for f in markers if f in set(shown["family"])]
    groups = [g for g in dict.fromkeys([*SUPERVISION_COLOURS, *shown["groups"]]) if g in colours]
    family_handles = [Line2D([], [], marker=markers[f], linestyle="", color="grey",
                             markeredgecolor="black", label=f) for f in families]
    group_handles = [Line2D([], [], marker="o", linestyle="", color=colours[g], label=g) for g in groups]
    front_handle = [Line2D([], [], linestyle="--", color="black", label="Pareto front")]
    first = ax.legend(handles=family_handles, title="family", fontsize=9, title_fontsize=9,
                      loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.add_artist(first)
    ax.legend(handles=group_handles + front_handle, title="groups from", fontsize=9,
              title_fontsize=9, loc="lower left", bbox_to_anchor=(1.01, 0.0), frameon=False)
    left_out = points.loc[~points.index.isin(shown.index)]
    if len(left_out):
        ax.text(0.0, -0.14, "not drawn (no F1 or TPR gap): " + ", ".join(
            f"{m} ({s})" for m, s in zip(left_out["method"], left_out["supervision"])),
            transform=ax.transAxes, fontsize=8, va="top")
    ax.set_title(titled(f"F1 against the {attribute} TPR gap, every method row of Table 1\n"
                        "dashed: Pareto front (highest F1, lowest gap), ringed points on it", notice),
                 fontsize=9)
    fig.tight_layout()
    return fig


# Offsets (points) tried for a point's label, first free one wins: right, left, above, below.
LABEL_OFFSETS = ((5, 3), (5, -9), (-5, 3), (-5, -9), (5, 10), (5, -16), (-5, 10), (-5, -16))


def _label_points(ax, x, y, names) -> None:
    """Name each point beside it, choosing per point the offset whose label lies farthest from the
    labels placed so far and from the other points (a greedy placement, in display units)."""
    ax.figure.canvas.draw()  # final limits, so display coordinates hold
    at = ax.transData.transform(np.column_stack([x, y])) if len(x) else np.zeros((0, 2))
    scale = ax.figure.dpi / 72  # points -> pixels
    placed = []
    for i, name in enumerate(names):
        width = 4.2 * len(name) * scale  # about 0.6 em per character at size 7
        best, best_score = LABEL_OFFSETS[0], -np.inf
        for dx, dy in LABEL_OFFSETS:
            cx = at[i, 0] + dx * scale + np.sign(dx) * width / 2  # the label's centre, pixels
            cy = at[i, 1] + (dy + 3) * scale
            others = [p for j, p in enumerate(at) if j != i] + placed
            score = min((np.hypot((cx - ox) / max(width, 1), (cy - oy) / (9 * scale))
                         for ox, oy in others), default=np.inf)
            if score > best_score + 1e-9:
                best, best_score = (dx, dy), score
        dx, dy = best
        placed.append((at[i, 0] + dx * scale + np.sign(dx) * width / 2, at[i, 1] + (dy + 3) * scale))
        ax.annotate(name, (x[i], y[i]), xytext=(dx, dy), textcoords="offset points", fontsize=7,
                    color="dimgray", ha="left" if dx > 0 else "right", zorder=4)


def tradeoff_figure(points: pd.DataFrame, *, attribute: str, notice: str | None) -> bytes:
    """plots/tradeoff_table1.png: `tradeoff_axes` as PNG bytes."""
    return _png(tradeoff_axes(points, attribute=attribute, notice=notice))


def _erm(summary: pd.DataFrame, metric: str, attribute: str) -> float | None:
    return Lookup(summary).mean("baselines", "erm", _attr(metric, attribute), metric)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def fig2_bars(summary: pd.DataFrame, *, notice: str | None, attribute: str) -> bytes:
    """Fig. 2: TPR gap of `attribute` (left) and Hamming accuracy (right) of DS, RW, GDRO, GADRO with
    k-means groups, one bar per K; error bars are the s.d. over folds x seeds; dashed line = ERM."""
    sweep = sweep_frame(summary, attribute=attribute)
    sweep = sweep[sweep["method"] != "mean"]
    ks = sorted(sweep["k"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(len(ks), 1)
    colors = plt.get_cmap("viridis")(np.linspace(0.1, 0.9, max(len(ks), 1)))
    panels = ((axes[0], "tpr_gap", f"TPR gap ({attribute}) ↓"), (axes[1], "acc", "Hamming accuracy ↑"))
    for ax, metric, label in panels:
        x = np.arange(len(PAPER_ORDER))
        for i, k in enumerate(ks):
            part = sweep[sweep["k"] == k].set_index("method").reindex(PAPER_ORDER)
            ax.bar(x + (i - (len(ks) - 1) / 2) * width, part[metric], width, yerr=part[f"{metric}_std"],
                   color=colors[i], label=f"K={k}", capsize=2, error_kw={"elinewidth": 0.8})
        erm = _erm(summary, metric, attribute)
        if erm is not None:
            ax.axhline(erm, color="black", linestyle="--", linewidth=1, label="ERM")
        ax.set_xticks(x, [NAMES[m] for m in PAPER_ORDER], fontsize=11)
        ax.set_ylabel(label, fontsize=11)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    # Below the panels, so it never covers a bar.
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(labels),
               fontsize=10, frameon=False)
    fig.suptitle(titled("Fig. 2: k-means IDI across K (error bars: s.d. over folds × seeds)", notice),
                 fontsize=11)
    fig.tight_layout()
    return _png(fig)


def fig3_sweep(summary: pd.DataFrame, *, notice: str | None, attribute: str) -> bytes:
    """Fig. 3: mean of DS, RW, GDRO, GADRO vs K: Hamming accuracy and TPR gap of `attribute`; dashed = ERM."""
    sweep = sweep_frame(summary, attribute=attribute)
    mean = sweep[sweep["method"] == "mean"].sort_values("k")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, label, color in ((axes[0], "acc", "Hamming accuracy ↑", "tab:blue"),
                                     (axes[1], "tpr_gap", f"TPR gap ({attribute}) ↓", "tab:red")):
        ax.errorbar(mean["k"], mean[metric], yerr=mean[f"{metric}_std"], marker="o", color=color,
                    capsize=3, label="mean of 4 methods")
        erm = _erm(summary, metric, attribute)
        if erm is not None:
            ax.axhline(erm, color="black", linestyle="--", linewidth=1, label="ERM")
        ax.set_xscale("log", base=2)
        ax.set_xticks(mean["k"], [str(k) for k in mean["k"]])
        ax.minorticks_off()
        ax.set_xlabel("number of clusters K", fontsize=11)
        ax.set_ylabel(label, fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle(titled("Fig. 3: mean of DS, RW, GDRO, GADRO vs K (bars: s.d. over folds × seeds)", notice),
                 fontsize=11)
    fig.tight_layout()
    return _png(fig)


def tsne_2d(embeddings: np.ndarray) -> np.ndarray:
    """sklearn t-SNE as paper Table A1 (perplexity 40, init pca, random_state 42); perplexity is
    clipped to n_samples - 1, which t-SNE requires."""
    n = len(embeddings)
    perplexity = float(min(TSNE_PERPLEXITY, n - 1))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=TSNE_SEED,
                learning_rate="auto")
    # One OpenMP thread: the Barnes-Hut gradient then sums in a fixed order (same picture every
    # run), and busy-waiting threads on a shared machine made it 6x slower, not faster.
    with threadpool_limits(limits=1, user_api="openmp"):
        return tsne.fit_transform(np.asarray(embeddings, dtype=np.float64))


MARKERS = ("o", "^", "s", "D", "v", "P", "*", "X", "<", ">")  # one per group; Male o, Female ^
MISSING_MARKER = "x"  # a speaker whose group is excluded (None)


def fig4_tsne(points: np.ndarray, clusters: np.ndarray, groups: np.ndarray, *, group_names,
              attribute: str, k: int, fold: int, notice: str | None) -> bytes:
    """Fig. 4: t-SNE of speaker embeddings; colour = k-means cluster, marker = group of
    `attribute` (`groups`: (n,) group name per point, None = excluded; `group_names` in schema
    order; gender: circle male, triangle female)."""
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab20" if k <= 20 else "gist_ncar")
    colors = cmap(np.asarray(clusters) % 20 / 20 if k <= 20 else np.asarray(clusters) / max(k - 1, 1))
    groups = np.asarray(groups, dtype=object)
    shown = [(name, MARKERS[i % len(MARKERS)], groups == name) for i, name in enumerate(group_names)]
    missing = np.array([g is None for g in groups], dtype=bool)
    if missing.any():
        shown.append((f"{attribute} excluded", MISSING_MARKER, missing))
    for _, marker, sel in shown:
        ax.scatter(points[sel, 0], points[sel, 1], c=colors[sel], marker=marker, s=14, alpha=0.8,
                   linewidths=0.2, edgecolors="black")
    handles = [Line2D([], [], marker=marker, linestyle="", color="grey", label=name)
               for name, marker, _ in shown]
    ax.legend(handles=handles, fontsize=10, loc="best")
    ax.set_xlabel("t-SNE 1", fontsize=11)
    ax.set_ylabel("t-SNE 2", fontsize=11)
    ax.set_title(titled(f"Fig. 4: fold-{fold} training clips, speaker embeddings\n"
                        f"colour = k-means cluster (K={k}), marker = {attribute}", notice), fontsize=10)
    fig.tight_layout()
    return _png(fig)


def load_fig4_data(*, corpus_dir, speaker_dir, groups_dir, schema, attribute: str, k: int = FIG4_K,
                   fold: int = FIG4_FOLD):
    """Embeddings, cluster ids and `attribute` groups of the training rows of one fold of kmeans_k<k>.csv.

    Uses fold `fold` (the paper's fold 5) when present, else the highest fold in the file (tiny
    test projects). `schema`: the corpus's (actors.csv is read by `schema.speaker_groups`).
    Returns (embeddings (n, E), clusters (n,), groups (n,) group names (None = excluded), fold used).
    """
    from fairser import schema as corpus_schema
    from pathlib import Path

    from fairser.errors import InputError

    corpus_dir, speaker_dir, groups_dir = Path(corpus_dir), Path(speaker_dir), Path(groups_dir)
    groups_path = groups_dir / f"kmeans_k{k}.csv"
    index_path, emb_path = speaker_dir / "index.csv", speaker_dir / "embeddings.npy"
    for path in (groups_path, index_path, emb_path, corpus_dir / "clips.csv", corpus_dir / "actors.csv"):
        if not path.is_file():
            raise InputError(f"{path}: no such file (Fig. 4 needs it)")
    groups = pd.read_csv(groups_path)
    if not {"fold", "file", "split", "group"} <= set(groups.columns):
        raise InputError(f"{groups_path}: expected columns fold, file, split, group")
    folds = sorted(groups["fold"].unique())
    fold = fold if fold in folds else int(folds[-1])
    train = groups[(groups["fold"] == fold) & (groups["split"] == "train")]
    if len(train) < 3:
        raise InputError(f"{groups_path}: fold {fold} has {len(train)} train rows; t-SNE needs 3")
    index = pd.read_csv(index_path)
    embeddings = np.load(emb_path, mmap_mode="r")
    if "file" not in index.columns or len(index) != len(embeddings):
        raise InputError(f"{index_path}: expected a `file` column with one row per row of {emb_path}")
    row_of = pd.Series(np.arange(len(index)), index=index["file"])
    lacking = ~train["file"].isin(row_of.index)
    if lacking.any():
        raise InputError(f"{index_path}: no speaker embedding for {train['file'][lacking].iloc[0]}")
    clips = pd.read_csv(corpus_dir / "clips.csv", usecols=["file", "actor"]).set_index("file")["actor"]
    column = schema.attribute(attribute).column
    actors_path = corpus_dir / "actors.csv"
    actors = pd.read_csv(actors_path, keep_default_na=False, na_values=[""])
    for c in ("actor", column):
        if c not in actors.columns:
            raise InputError(f"{actors_path}: no column {c!r} (Fig. 4 needs it)")
    one = corpus_schema.Schema(classes=schema.classes, folds=schema.folds,
                               attributes=(schema.attribute(attribute),))
    of_actor = corpus_schema.speaker_groups(actors, one, actors_path).set_index("actor")[attribute]
    actor = train["file"].map(clips)
    if actor.isna().any() or not actor.isin(of_actor.index).all():
        lost = actor.isna() | ~actor.isin(of_actor.index)
        raise InputError(f"{corpus_dir}: no actor or {column} for clip {train['file'][lost].iloc[0]}")
    groups = actor.map(of_actor).to_numpy(dtype=object)
    emb = np.asarray(embeddings[row_of.loc[train["file"]].to_numpy()], dtype=np.float64)
    return emb, train["group"].to_numpy(int), groups, fold


def groupfree_markdown(*, error_set: pd.DataFrame, sweep: pd.DataFrame, clusters: pd.DataFrame,
                       notice: str | None) -> str:
    """What JTT's and GEORGE's first phases found (data/runs/baselines/jtt/{error_set,sweep}.csv,
    george/clusters.csv; fairser.debias.jtt / george `logs`): JTT's kept settings, its error set at
    the kept T beside each true group's share of the training clips (mean over folds x seeds), and
    GEORGE's clusters' purity, majority share and NMI per attribute (mean over folds x seeds)."""
    kept = sweep[sweep["chosen"] == 1]
    settings = (kept.groupby(["identification_epochs", "lambda_up"]).size().reset_index(name="n")
                .sort_values(["identification_epochs", "lambda_up"]))
    chosen = error_set[error_set["chosen"] == 1]
    rate = chosen.drop_duplicates(["fold", "seed"])["error_rate"]
    rule = ", ".join(sorted(set(sweep["error_rule"].astype(str))))
    lines = [titled("## JTT and GEORGE: whom the first phase singles out", notice), "",
             f"JTT (error rule `{rule}`): setting kept on dev macro-F1 per (fold, seed): "
             + ", ".join(f"T = {int(r.identification_epochs)}, lambda_up = {r.lambda_up:g} "
                         f"({int(r.n)} of {len(kept)})" for r in settings.itertuples())
             + f". Error set at the kept T: {rate.mean():.1%} of the training clips "
             f"(range {rate.min():.1%} to {rate.max():.1%}).", "",
             "| attribute | group | share of training clips | share of JTT's error set |",
             "|---|---|---|---|"]
    shares = chosen.groupby(["attribute", "group"], sort=False)[["train_share", "error_share"]].mean()
    for (attribute, group), r in shares.iterrows():
        lines.append(f"| {attribute} | {group} | {r.train_share:.3f} | {r.error_share:.3f} |")
    lines += ["", "GEORGE's clusters (per class, UMAP + k-means + overclustering) against the true "
              "groups of the training clips; purity's floor is the majority share:", "",
              "| attribute | clusters | purity | majority share | NMI |", "|---|---|---|---|---|"]
    for attribute, r in clusters.groupby("attribute", sort=False)[
            ["groups", "purity", "majority_share", "nmi"]].mean().iterrows():
        lines.append(f"| {attribute} | {r.groups:.1f} | {r.purity:.3f} | {r.majority_share:.3f} | "
                     f"{r.nmi:.3f} |")
    return "\n".join(lines) + "\n"
