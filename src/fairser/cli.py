"""The `fairser` console command (today `fairser audit`): the top floor; nothing imports it."""

from __future__ import annotations

import argparse

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
values:
  Speaker ids and attribute values are folded as fairser.values does for the importers: all-digit
  speaker ids lose leading zeros (01 = 1); values differing by case or spaces are one group; gender
  spellings (M, male, woman, ...) become Male / Female, any other gender value is an error unless
  --keep-values. Numeric columns (age in years) need --bins. report.md and values.csv list the mapping.
output (written all at once; nothing on bad input; runs in any folder, no params.yaml needed):
  report.md, metrics.json (flat keys), per_class.csv, per_group.csv, values.csv, tpr_<attr>.png,
  selection_<attr>.png and a marker file (.fairser-audit) naming them. An existing --out folder is
  replaced only if it is empty or holds nothing but an earlier audit's files (else: --force).
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
    p.add_argument("--bins", action="append", default=[], metavar="COLUMN=E1,E2,...",
                   help="bin edges of a numeric speakers column, e.g. age=18,30,50,100 (groups "
                        "[18, 30), [30, 50), [50, 100)); repeat for more columns; required for numbers")
    p.add_argument("--keep-values", action="store_true",
                   help="keep gender values that are none of the usual Male / Female spellings as "
                        "groups of their own instead of stopping")
    p.add_argument("--min-coverage", type=float, default=1.0, metavar="SHARE",
                   help="stop unless at least this share of the labelled clips has predictions "
                        "(default 1.0: all of them)")
    p.add_argument("--threshold", metavar="T", default="1/K",
                   help="a prediction is positive when its score > T: 1/K (default; K classes), "
                        "a fraction like 1/2, or a number in (0, 1)")
    p.add_argument("--n-boot", type=int, default=None, metavar="N",
                   help="speaker-bootstrap resamples for the intervals (default 1000, as the pipeline; "
                        "0: no intervals)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="seed of the resamples (default 0, as the pipeline)")
    p.add_argument("--params", default=None, metavar="FILE",
                   help="a fairser params.yaml to take threads (compute), seed and n-boot "
                        "(evaluate.bootstrap) from; not read unless named")
    p.add_argument("--out", default="audit", metavar="DIR",
                   help="report folder (default: ./audit); a folder holding other files is refused")
    p.add_argument("--force", action="store_true",
                   help="replace --out even if it holds files the audit did not write (they are lost)")
    return p


def audit_settings(params: str | None) -> dict:
    """Threads, seed and resamples: the package's defaults, or those of the --params FILE named
    (never a params.yaml that merely happens to be in the working folder)."""
    from fairser import config, engine
    from fairser.audit import DEFAULT_N_BOOT, DEFAULT_SEED

    if params is None:
        return {"threads": engine.configure(None), "seed": DEFAULT_SEED, "n_boot": DEFAULT_N_BOOT}
    p = config.load(params)
    return {"threads": engine.configure(p["compute"]), "seed": p["seed"],
            "n_boot": p["evaluate"]["bootstrap"]}


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
    settings = {}

    def size_threads() -> None:
        settings.update(audit_settings(args.params))

    def audit() -> None:
        from fairser import audit as audit_mod  # imported on use: `fairser --help` stays fast

        audit_mod.check_out(args.out, force=args.force)  # before any work: nothing to lose later
        report = audit_mod.audit_predictions(
            args.predictions, args.labels, args.speakers, attributes=args.attributes,
            intersect=args.intersect, threshold=args.threshold, bins=args.bins,
            keep_values=args.keep_values, min_coverage=args.min_coverage,
            n_boot=settings["n_boot"] if args.n_boot is None else args.n_boot,
            seed=settings["seed"] if args.seed is None else args.seed)
        report.write(args.out, force=args.force)
        c = report.coverage
        print(f"audit: {report.inputs.described['n_clips']} clips, {len(report.inputs.classes)} classes, "
              f"attributes {', '.join(report.inputs.attributes)} -> {args.out}\n"
              f"coverage: predictions for {c['predicted_clips']} of {c['labelled_clips']} labelled clips "
              f"({c['share']:.1%}); speakers without any: {', '.join(c['missing_speakers']) or 'none'}")

    run(audit, size_threads=size_threads)


if __name__ == "__main__":
    main()
