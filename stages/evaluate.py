"""Stage evaluate: score every run in data/runs per fold and seed; write the detail and the DVC metrics.

python stages/evaluate.py --corpus data/corpus --split data/split --runs data/runs \
    --out data/eval --metrics metrics/summary.json
Params: seed, evaluate.bootstrap, idi.k (Table 1's k-means rows), split.bias and idi.truth (Table
1's attribute, `schema.truth_attribute`; Table 2's are the corpus's others). Classes, the 1/K
threshold and the attributes come from data/corpus/schema.json.
"""

from fairser import config, evaluate
from fairser import schema as corpus_schema
from fairser.stage import parser, run
from fairser.io import atomic_dir, write_json


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="folder with schema.json, clips.csv and actors.csv")
    p.add_argument("--split", required=True, help="folder with folds.csv")
    p.add_argument("--runs", required=True, help="folder of <set>/<method>/predictions.csv")
    p.add_argument("--out", required=True,
                   help="output folder: per_fold.csv, per_group.csv, summary.csv, test_speakers.csv")
    p.add_argument("--metrics", required=True, help="DVC metrics JSON (headline numbers)")
    args = p.parse_args()
    params = config.load(args.params)

    # Every input is read and checked before the bootstrap starts.
    schema = corpus_schema.load(args.corpus)
    truth_attr = corpus_schema.truth_attribute(schema, params["split"]["bias"], params["idi"]["truth"])
    truth = evaluate.load_truth(args.corpus, args.split, schema)
    runs = evaluate.find_runs(args.runs)
    predictions = {r: evaluate.read_predictions(r, truth) for r in runs}

    per_fold, per_group, replicates = evaluate.evaluate_runs(
        truth, predictions, n_boot=params["evaluate"]["bootstrap"], seed=params["seed"])
    speakers = evaluate.speakers_per_group(truth)
    summary = evaluate.summarize(per_fold, replicates, speakers)
    headline = evaluate.headline(summary, k=params["idi"]["k"], truth=truth_attr,
                                 others=evaluate.table2_attributes(schema, truth_attr))

    with atomic_dir(args.out) as tmp:
        per_fold.to_csv(tmp / "per_fold.csv", index=False)
        per_group.to_csv(tmp / "per_group.csv", index=False)
        summary.to_csv(tmp / "summary.csv", index=False)
        speakers.to_csv(tmp / "test_speakers.csv", index=False)
    write_json(args.metrics, headline)
    n_seeds = per_fold["seed"].nunique()
    print(f"evaluate: {len(runs)} runs x {len(truth.folds)} folds x {n_seeds} seed(s) -> "
          f"{args.out}, {args.metrics}")


if __name__ == "__main__":
    run(main)
