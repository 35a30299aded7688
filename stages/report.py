"""Stage report: Tables 1-2 (Markdown and CSV), Figs. 2-4 and the trade-off figure (PNG), DVC data plots (CSV).

python stages/report.py --eval data/eval --corpus data/corpus --speaker data/speaker \
    --groups data/groups [--features-info data/features/info.json --pseudo-info data/pseudo/info.json] \
    --reports reports --plots plots
Params: idi.k (Table 1's k-means rows; Fig. 4's K when data/groups has no kmeans_k16.csv); preset,
seed and train.seeds (named in every title with the corpus coverage and the models); split.bias
and idi.truth (Table 1's and the figures' attribute, `schema.truth_attribute`; Table 2's rows are
the corpus's other attributes, data/corpus/schema.json; with none, table2.md says so in one line
and there is no table2.csv). table1_vs_paper.md compares with the paper only for a corpus of
CREMA-D's classes with gender as Table 1's attribute; otherwise it says so in one line.
"""

import json
from pathlib import Path

import pandas as pd

from fairser import config, provenance, report, values
from fairser import schema as corpus_schema
from fairser.evaluate import SUMMARY_COLUMNS, table2_attributes
from fairser.errors import InputError
from fairser.stage import parser, run
from fairser.io import atomic_dir



def data_notes(corpus_info: dict, coverage_json: Path | None) -> list[str]:
    """Lines every table shows under its title: clips skipped and why and the spellings of speaker
    ids and attribute values that were normalised (corpus.json), and the split stage's warnings
    (coverage.json: degenerate biasing)."""
    notes = [f"Corpus: {corpus_info['coverage']}"] if corpus_info.get("coverage") else []
    if values.describe(corpus_info.get("normalised") or {}):  # an imported corpus's folded spellings
        notes.append(f"Values normalised: {values.describe(corpus_info['normalised'])}")
    if coverage_json is not None and coverage_json.is_file():
        notes += [f"**Warning:** {w}" for w in json.loads(coverage_json.read_text()).get("warnings", [])]
    return notes


def with_notes(markdown: str, notes: list[str]) -> str:
    """`markdown` with `notes` as a quoted block after its first (title) line."""
    if not notes:
        return markdown
    title, _, rest = markdown.partition("\n")
    return f"{title}\n\n" + "\n".join(f"> {n}" for n in notes) + f"\n{rest}"


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--eval", required=True, help="folder with summary.csv and per_fold.csv")
    p.add_argument("--corpus", required=True, help="folder with corpus.json, schema.json, clips.csv, actors.csv")
    p.add_argument("--speaker", required=True, help="folder with embeddings.npy and index.csv")
    p.add_argument("--groups", required=True, help="folder with kmeans_k16.csv")
    p.add_argument("--features-info", default=None,
                   help="data/features/info.json (the upstream named in every title)")
    p.add_argument("--pseudo-info", default=None,
                   help="data/pseudo/info.json (the pseudo-label model named in every title)")
    p.add_argument("--split", default=None, help="folder with coverage.json (its warnings are shown)")
    p.add_argument("--runs", default=None,
                   help="data/runs/baselines: JTT's and GEORGE's logs (jtt/error_set.csv, "
                        "jtt/sweep.csv, george/clusters.csv) -> groupfree.md")
    p.add_argument("--reports", required=True, help="output folder for the tables")
    p.add_argument("--plots", required=True, help="output folder for figures and DVC plot CSVs")
    args = p.parse_args()
    params = config.load(args.params)
    k = params["idi"]["k"]
    schema = corpus_schema.load(args.corpus)
    attribute = corpus_schema.truth_attribute(schema, params["split"]["bias"], params["idi"]["truth"])
    others = [schema.attribute(a) for a in table2_attributes(schema, attribute)]
    like_paper = schema.classes == corpus_schema.CREMA_D_CLASSES and attribute == "gender"

    eval_dir, corpus_dir = Path(args.eval), Path(args.corpus)
    for path in (eval_dir / "summary.csv", eval_dir / "per_fold.csv", eval_dir / "test_speakers.csv",
                 corpus_dir / "corpus.json"):
        if not path.is_file():
            raise InputError(f"{path}: no such file")
    summary = pd.read_csv(eval_dir / "summary.csv", keep_default_na=False, na_values=[""])
    if list(summary.columns) != SUMMARY_COLUMNS:
        raise InputError(f"{eval_dir / 'summary.csv'}: expected columns {SUMMARY_COLUMNS}")
    per_fold = pd.read_csv(eval_dir / "per_fold.csv")
    n_folds = per_fold["fold"].nunique()
    n_seeds = per_fold["seed"].nunique() if "seed" in per_fold.columns else 1
    speakers = pd.read_csv(eval_dir / "test_speakers.csv", keep_default_na=False)
    try:
        corpus_info = json.loads((corpus_dir / "corpus.json").read_text())
        corpus_info.get("notice")
    except (json.JSONDecodeError, AttributeError):
        raise InputError(f"{corpus_dir / 'corpus.json'}: not a JSON object") from None
    notes = data_notes(corpus_info, None if args.split is None else Path(args.split) / "coverage.json")
    # Every title names the corpus and its coverage, the three models, the preset and the seeds.
    models = provenance.models_from_info(features=args.features_info,
                                         speaker=Path(args.speaker) / "info.json",
                                         pseudo=args.pseudo_info)
    seeds = params["train"].get("seeds", 1)  # train.seeds (one seed, 0, where the key is absent)
    stamp = dict(corpus_info=corpus_info, models=models, preset=params["preset"],
                 seed=params["seed"], seeds=seeds)
    notice = provenance.caption(**stamp)
    fig_notice = provenance.caption(**stamp, width=110)
    # Fig. 4 uses the paper's K = 16 when those clusters exist, else Table 1's k (idi.k).
    fig4_k = report.FIG4_K if (Path(args.groups) / f"kmeans_k{report.FIG4_K}.csv").is_file() else k
    # Fig. 4's inputs are checked before any drawing.
    emb, clusters, groups, fold = report.load_fig4_data(
        corpus_dir=corpus_dir, speaker_dir=args.speaker, groups_dir=args.groups, schema=schema,
        attribute=attribute, k=fig4_k)

    groupfree = None
    if args.runs is not None:
        logs = {}
        for name, rel in (("error_set", "jtt/error_set.csv"), ("sweep", "jtt/sweep.csv"),
                          ("clusters", "george/clusters.csv")):
            path = Path(args.runs) / rel
            if not path.is_file():
                raise InputError(f"{path}: no such file")
            logs[name] = pd.read_csv(path, keep_default_na=False, na_values=[""])
        groupfree = report.groupfree_markdown(**logs, notice=notice)

    t1 = report.table1(summary, k=k, attribute=attribute)
    t2 = report.table2(summary, [a.name for a in others]) if others else None
    points = report.tradeoff_points(t1)  # F1 against TPR gap of every method row of Table 1
    figures = {
        "fig2_k_bars.png": report.fig2_bars(summary, notice=fig_notice, attribute=attribute),
        "fig3_k_mean.png": report.fig3_sweep(summary, notice=fig_notice, attribute=attribute),
        "fig4_tsne.png": report.fig4_tsne(report.tsne_2d(emb), clusters, groups,
                                          group_names=schema.attribute(attribute).groups,
                                          attribute=attribute, k=fig4_k, fold=fold, notice=fig_notice),
        "tradeoff_table1.png": report.tradeoff_figure(points, attribute=attribute, notice=fig_notice),
    }
    with atomic_dir(args.reports) as tmp:
        (tmp / "table1.md").write_text(with_notes(report.table1_markdown(
            t1, k=k, n_folds=n_folds, n_seeds=n_seeds, notice=notice, attribute=attribute,
            speakers=speakers), notes))
        if like_paper:
            (tmp / "table1_vs_paper.md").write_text(with_notes(report.table1_vs_paper_markdown(
                t1, k=k, notice=notice,
                differences=provenance.paper_differences(corpus_info=corpus_info, models=models)), notes))
        else:
            (tmp / "table1_vs_paper.md").write_text(report.not_paper_markdown(schema, attribute, notice))
        if t2 is not None:
            (tmp / "table2.md").write_text(with_notes(report.table2_markdown(
                t2, n_folds=n_folds, n_seeds=n_seeds, notice=notice, attributes=others,
                speakers=speakers), notes))
        else:
            (tmp / "table2.md").write_text(report.no_table2_markdown(attribute, notice))
        if groupfree is not None:
            (tmp / "groupfree.md").write_text(with_notes(groupfree, notes))
        # A CSV has no title: the notice rides along in a column.
        t1.assign(notice=notice or "").to_csv(tmp / "table1.csv", index=False)
        if t2 is not None:
            t2.assign(notice=notice or "").to_csv(tmp / "table2.csv", index=False)
    with atomic_dir(args.plots) as tmp:
        for name, png in figures.items():
            (tmp / name).write_bytes(png)
        report.tradeoff_frame(summary, attribute=attribute).to_csv(tmp / "tradeoff.csv", index=False)
        points.assign(notice=notice or "").to_csv(tmp / "tradeoff_table1.csv", index=False)
        report.sweep_frame(summary, attribute=attribute).query("method == 'mean'").drop(
            columns="method").to_csv(tmp / "k_sweep.csv", index=False)
    print(f"report: tables -> {args.reports}, figures -> {args.plots}")


if __name__ == "__main__":
    run(main)
