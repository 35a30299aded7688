"""The `fairser` console command (today `fairser audit`): the top floor; nothing imports it."""

from __future__ import annotations

import argparse

from fairser.errors import InputError
from fairser.stage import run


AUDIT_EPILOG = """\
input formats:
  PREDICTIONS  CSV: a clip id column (file or id), one score column per class (a probability or
               0/1 in [0, 1]); the class set is these columns. A pipeline predictions.csv
               (fold[,seed],file,<classes>) also works: metrics are then computed per fold (and
               seed) and averaged as in the pipeline's Tables 1-2.
  LABELS       CSV: the clip id column and one column per class (vote shares or 0/1), exactly the
               predictions' classes; or a fairser corpus folder (clips.csv). A target is positive
               when its label score > 1/K.
  SPEAKERS     CSV: the clip id column, a speaker column (speaker or actor) and demographic columns,
               one value per speaker ("Unknown" = missing); or a fairser corpus folder (clips.csv has
               actor; actors.csv holds the attributes its schema.json names, grouped as in the pipeline).
output (written all at once; nothing on bad input):
  report.md, metrics.json (flat keys), per_class.csv, per_group.csv, tpr_<attr>.png, selection_<attr>.png
example:
  fairser audit --predictions data/runs/baselines/erm/predictions.csv --labels data/corpus \\
      --speakers data/corpus --intersect gender,age --out reports/audit_erm
"""


def audit_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--predictions", required=True, metavar="PREDICTIONS",
                   help="CSV of per-clip class scores (see input formats below)")
    p.add_argument("--labels", required=True, metavar="LABELS",
                   help="label CSV or fairser corpus folder (see below)")
    p.add_argument("--speakers", required=True, metavar="SPEAKERS",
                   help="clip-to-speaker CSV with demographic columns, or fairser corpus folder")
    p.add_argument("--attributes", metavar="A,B,...",
                   help="demographic columns to audit, in this order (default: all of SPEAKERS'; "
                        "the corpus folder: its schema.json's attributes)")
    p.add_argument("--intersect", action="append", default=[], metavar="A,B",
                   help="also audit the combined groups of these attributes, e.g. gender,age "
                        "(Female+Young, ...); repeat for more intersections")
    p.add_argument("--threshold", metavar="T", default="1/K",
                   help="a prediction is positive when its score > T: 1/K (default; K classes), "
                        "a fraction like 1/2, or a number in (0, 1)")
    p.add_argument("--n-boot", type=int, default=1000, metavar="N",
                   help="speaker-bootstrap resamples for the intervals (default 1000, as the pipeline; "
                        "0: no intervals)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of the resamples (default 0, as the pipeline's params.yaml)")
    p.add_argument("--out", default="audit", metavar="DIR",
                   help="output folder, replaced as a whole (default: ./audit)")
    return p


def main(argv=None) -> None:
    """The `fairser` console command. Today one subcommand: `fairser audit`."""
    top = argparse.ArgumentParser(prog="fairser", description="fairser command-line tools.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    audit_parser(sub.add_parser(
        "audit", help="fairness report for any multi-label emotion model's predictions",
        description="Fairness report for a multi-label emotion model's predictions: macro-F1 and\n"
                    "Hamming accuracy, TPR gap and DP gap with speaker-bootstrap intervals, per\n"
                    "attribute and intersection, per group and per class (fairser.audit). The\n"
                    "metrics, resampling and intervals are the pipeline's own (fairser.evaluate).",
        epilog=AUDIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter))
    args = top.parse_args(argv)

    def audit() -> None:
        from fairser import audit as audit_mod  # imported on use: `fairser --help` stays fast

        if args.n_boot < 0:
            raise InputError(f"--n-boot: {args.n_boot} is negative")
        inputs = audit_mod.load(predictions=args.predictions, labels=args.labels, speakers=args.speakers,
                                attributes=args.attributes, intersect=args.intersect,
                                threshold=args.threshold)
        result = audit_mod.audit(inputs, n_boot=args.n_boot, seed=args.seed)
        audit_mod.write_report(result, inputs, args.out)
        print(f"audit: {inputs.described['n_clips']} clips, {len(inputs.classes)} classes, "
              f"attributes {', '.join(inputs.attributes)} -> {args.out}")

    run(audit)


if __name__ == "__main__":
    main()
