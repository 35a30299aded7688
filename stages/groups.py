"""Groups stage: ground-truth, pseudo and k-means group ids per fold, and IDI metrics (docs/DESIGN.md).

python stages/groups.py --corpus data/corpus --split data/split --speaker data/speaker
    --pseudo data/pseudo --out data/groups --metrics metrics/idi.json [--params params.yaml]
Reads params: idi.k_sweep (through fairser.config.table1_and_sweep_ks; idi.k is one of them),
split.bias and idi.truth (the attribute of gender.csv, fairser.schema.truth_attribute); the
attributes come from data/corpus/schema.json.
"""

from fairser import config, stage
from fairser import schema as corpus_schema
from fairser.idi import run_groups


def main() -> None:
    p = stage.parser(__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="folder with clips.csv, actors.csv and schema.json")
    p.add_argument("--split", required=True, help="folder with folds.csv")
    p.add_argument("--speaker", required=True, help="folder with embeddings.npy and index.csv")
    p.add_argument("--pseudo", required=True, help="folder with pseudo.csv")
    p.add_argument("--out", required=True, help="output folder (gender.csv, pseudo.csv, kmeans_k<K>.csv)")
    p.add_argument("--metrics", required=True, help="IDI metrics JSON (pseudo accuracy, purity, NMI)")
    args = p.parse_args()
    params = config.load(args.params)
    schema = corpus_schema.load(args.corpus)
    truth = corpus_schema.truth_attribute(schema, params["split"]["bias"], params["idi"]["truth"])
    run_groups(args.corpus, args.split, args.speaker, args.pseudo, args.out, args.metrics,
               ks=config.table1_and_sweep_ks(params), schema=schema, truth=truth)


if __name__ == "__main__":
    stage.run(main)
