"""The trade-off view (issue 24 item 6): F1 against the TPR gap for every method row of Table 1,
marker per family, colour per supervision, intervals as bars, the Pareto front; drawn by the
report stage into plots/ and declared as a DVC plot."""

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.collections import PathCollection
from test_evaluate import ROOT
from test_report import reported  # noqa: F401 (the report stage run on test_evaluate's tiny tree: a fixture)

from fairser import report
from fairser.constants import SURROGATE_NOTICE
from fairser.debias import base


# --- the Pareto front, by hand -----------------------------------------------------------------

def test_pareto_front_of_a_hand_made_case():
    #          A     B     C     D     E (= B)  F     G (NaN)
    gap = [0.10, 0.20, 0.30, 0.05, 0.20, 0.10, np.nan]
    f1 = [0.50, 0.70, 0.60, 0.30, 0.70, 0.40, 0.90]
    # C is dominated by B (higher F1, lower gap); F by A (same gap, lower F1); B and E are equal,
    # so neither dominates the other; G has no gap: on no front, and it dominates nothing.
    assert report.pareto_front(f1, gap).tolist() == [True, True, False, True, True, False, False]


def test_pareto_front_keeps_a_point_better_in_one_objective_only():
    assert report.pareto_front([0.9, 0.1], [0.5, 0.0]).tolist() == [True, True]
    assert report.pareto_front([0.9, 0.9], [0.5, 0.0]).tolist() == [False, True]
    assert report.pareto_front([0.9, 0.1], [0.0, 0.0]).tolist() == [True, False]


# --- family and supervision of a row -----------------------------------------------------------

def test_family_falls_back_to_the_mapping_and_a_methods_taxonomy_wins(monkeypatch):
    assert report.method_family("gdro") == "DRO"
    assert report.method_family("random") == "baseline"  # Random is no registered Method
    assert report.method_family("nosuchmethod") == "other"
    monkeypatch.setattr(base.REGISTRY["gdro"], "taxonomy", "regularisation", raising=False)
    assert report.method_family("gdro") == "regularisation"


def test_a_new_method_with_a_taxonomy_appears_without_changes(monkeypatch):
    class Toy(base.Method):
        name = "toyadv"
        taxonomy = "adversarial"

    monkeypatch.setitem(base.REGISTRY, "toyadv", Toy())
    monkeypatch.setitem(report.NAMES, "toyadv", "ToyAdv")
    t1 = _table1([("ToyAdv", "k-means K=16", 0.6, 0.1), ("ERM", "none", 0.65, 0.3)])
    points = report.tradeoff_points(t1)
    assert points.set_index("method").loc["ToyAdv", ["family", "groups"]].tolist() == [
        "adversarial", "k-means"]
    fig = report.tradeoff_axes(points, attribute="gender", notice=None)
    assert len(_points_drawn(fig)) == 2


@pytest.mark.parametrize("supervision, kind", [("none", "none"), ("unsupervised", "none"),
                                               ("ground truth", "ground truth"), ("pseudo", "pseudo"),
                                               ("k-means K=16", "k-means"), ("k-means K=2", "k-means")])
def test_supervision_kinds(supervision, kind):
    assert report.supervision_kind(supervision) == kind


# --- the figure on a hand-made table -----------------------------------------------------------

def _table1(rows, *, intervals=True):
    """A Table 1 frame of `rows` (method, supervision, f1, tpr_gap) plus an Overall and a Gain row;
    gap intervals [gap - 0.02, gap + 0.05] (not centred, as evaluate's need not be)."""
    out = []
    for method, supervision, f1, gap in rows:
        out.append({"kind": "run", "method": method, "supervision": supervision, "f1": f1,
                    "acc": 0.8, "tpr_gap": gap, "dp_gap": 0.1,
                    "tpr_gap_ci_low": gap - 0.02 if intervals else np.nan,
                    "tpr_gap_ci_high": gap + 0.05 if intervals else np.nan,
                    "f1_ci_low": np.nan, "f1_ci_high": np.nan})
    out.append({"kind": "overall", "method": "Overall", "supervision": "pseudo", "f1": 0.5,
                "tpr_gap": 0.2})
    out.append({"kind": "gain", "method": "Gain", "supervision": "pseudo", "f1": -0.1,
                "tpr_gap": 0.3})
    return pd.DataFrame(out)


def _points_drawn(fig):
    ax = fig.axes[0]
    return [tuple(c.get_offsets()[0]) for c in ax.collections
            if isinstance(c, PathCollection) and c.get_gid() == "point"]


HAND = [("ERM", "none", 0.65, 0.30), ("Random", "none", 0.36, 0.06), ("LfF", "unsupervised", 0.66, 0.28),
        ("RW", "ground truth", 0.64, 0.17), ("RW", "pseudo", 0.60, 0.25), ("DS", "k-means K=16", 0.56, 0.20)]


def test_every_method_row_is_a_point_with_its_interval_and_the_front_is_drawn():
    points = report.tradeoff_points(_table1(HAND))
    assert list(zip(points["method"], points["supervision"])) == [(m, s) for m, s, _, _ in HAND]
    fig = report.tradeoff_axes(points, attribute="gender", notice=SURROGATE_NOTICE)
    ax = fig.axes[0]
    assert sorted(_points_drawn(fig)) == sorted((gap, f1) for _, _, f1, gap in HAND)
    bars = [line for line in ax.lines if line.get_gid() == "interval"]
    assert sorted((tuple(b.get_xdata()), tuple(b.get_ydata())) for b in bars) == sorted(
        ((gap - 0.02, gap + 0.05), (f1, f1)) for _, _, f1, gap in HAND)
    # By hand: LfF (F1 0.66, gap 0.28) beats ERM (0.65, 0.30); RW ground truth (0.64, 0.17) beats
    # RW pseudo (0.60, 0.25) and DS k-means (0.56, 0.20); Random (0.36, 0.06) has the lowest gap.
    want = {("LfF", "unsupervised"), ("RW", "ground truth"), ("Random", "none")}
    assert set(zip(points.loc[points["pareto"], "method"], points.loc[points["pareto"], "supervision"])) == want
    front = [line for line in ax.lines if line.get_gid() == "pareto"]
    assert len(front) == 1
    assert sorted(zip(front[0].get_xdata(), front[0].get_ydata())) == sorted(
        (gap, f1) for m, s, f1, gap in HAND if (m, s) in want)
    assert "TPR gap (gender)" in ax.get_xlabel() and "F1" in ax.get_ylabel()
    assert SURROGATE_NOTICE in ax.get_title()
    markers = {p.get_label() for p in ax.get_legend().legend_handles} | {
        t.get_text() for t in ax.artists[0].get_texts()}
    assert {"baseline", "biased learner", "pre-processing", "none", "ground truth", "pseudo",
            "k-means", "Pareto front"} <= markers


def test_rows_without_intervals_have_no_bars_and_rows_without_values_are_named():
    t1 = _table1(HAND[:2] + [("GDRO", "pseudo", 0.6, np.nan)], intervals=False)
    points = report.tradeoff_points(t1)
    fig = report.tradeoff_axes(points, attribute="race", notice=None)
    ax = fig.axes[0]
    assert len(_points_drawn(fig)) == 2
    assert [line for line in ax.lines if line.get_gid() == "interval"] == []
    assert any("GDRO (pseudo)" in t.get_text() for t in ax.texts)
    assert not points.set_index("method").loc["GDRO", "pareto"]


# --- the report stage and dvc.yaml -------------------------------------------------------------

def test_the_stage_writes_the_figure_and_its_csv_with_every_table1_method_row(reported):
    t1 = pd.read_csv(reported / "reports/table1.csv")
    points = pd.read_csv(reported / "plots/tradeoff_table1.csv")
    runs = t1[t1["kind"] == "run"]
    assert list(zip(points["method"], points["supervision"])) == list(zip(runs["method"], runs["supervision"]))
    assert np.allclose(points["tpr_gap"], runs["tpr_gap"]) and np.allclose(points["f1"], runs["f1"])
    assert np.allclose(points["tpr_gap_ci_low"], runs["tpr_gap_ci_low"], equal_nan=True)
    assert points["tpr_gap_ci_low"].notna().sum() > 0  # evaluate's intervals reach the figure
    assert points["notice"].str.startswith(SURROGATE_NOTICE).all()
    assert points["pareto"].tolist() == report.pareto_front(points["f1"], points["tpr_gap"]).tolist()
    image = mpimg.imread(reported / "plots/tradeoff_table1.png")
    assert image.ndim == 3 and image.shape[0] > 300 and image[..., :3].std() > 0


def test_dvc_yaml_declares_the_figure_and_its_data_as_plots():
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    assert "plots/tradeoff_table1.png" in plots
    data = [p["tradeoff_table1"] for p in plots if isinstance(p, dict) and "tradeoff_table1" in p]
    assert data and data[0]["x"] == "tpr_gap" and data[0]["y"] == {"plots/tradeoff_table1.csv": "f1"}
