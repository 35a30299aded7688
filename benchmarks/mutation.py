"""Mutation testing of the scientific core with mutmut 3, and the score table of docs/TESTING.md.

    python benchmarks/mutation.py            # run (tens of minutes on 2 cores), then write the table
    python benchmarks/mutation.py --report   # rewrite the table from the last run's results

mutmut (the `dev` extra) copies the project into a scratch folder, applies one small change at a
time (a flipped comparison, a changed constant, a dropped argument, ...) to the functions below,
and runs the fast unit tests that reach the changed function; a mutant "survives" when they all
still pass. Only the scientific core is mutated (the functions listed in CORE), with the fast tests
of TESTS (no `slow` marker). Lines that raise an error are not mutated: their messages are checked by
the bad-input tests, and a reworded message is not a scientific bug.

The table (killed / total per module, and every survivor's name and change) replaces the block
between the MARKERS in docs/TESTING.md; the reasons for the survivors kept are written by hand
below that block. The run is niced (10, as the tests), with at most --children test processes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "TESTING.md"
MARKERS = ("<!-- mutation table: begin (benchmarks/mutation.py writes this block) -->",
           "<!-- mutation table: end -->")

# Module -> the functions mutated (mutmut names: x_<function>, or xǁ<Class>ǁ<method>).
CORE = {
    "metrics": ["*"],
    "split": ["vote_share", "multi_hot", "majority_label", "majority_gender_by_emotion",
              "bias_split", "clip_attributes", "fold_table", "count_table"],
    "debias.dro": ["*"],
    "debias.lff": ["*"],
    "debias.weights": ["*"],
    # train.py: the objectives, the class weights, the q state and the kept-epoch choice.
    "train": ["training_targets", "class_weights", "cb_losses", "ǁ_Jobǁ_head_loss",
              "ǁ_Jobǁ_difficulty", "ǁ_Jobǁ_lff_loss", "ǁ_Jobǁ_disent_loss", "_train_job"],
    "evaluate": ["_speaker_counts", "_group_matrix", "speaker_resample_weights", "evaluate_runs",
                 "bootstrap_interval", "gain", "summarize"],
    "idi": ["kmeans_groups", "purity", "nmi", "median_f0", "pitch_probabilities"],
}
TESTS = ["tests/test_metrics.py", "tests/test_split.py", "tests/test_debias_dro.py",
         "tests/test_debias_lff.py", "tests/test_debias_weights.py", "tests/test_train.py",
         "tests/test_train_objectives.py", "tests/test_evaluate.py", "tests/test_idi.py"]
COPY = ["src", "tests", "stages", "params.yaml", "dvc.yaml"]

STATUS = {1: "killed", 3: "killed", 0: "survived", 36: "timeout", 24: "timeout", -24: "timeout",
          152: "timeout", 255: "timeout", 33: "no tests", 5: "no tests", 34: "skipped", None: "not checked"}


def mutant_patterns() -> list[str]:
    out = []
    for module, functions in CORE.items():
        for f in functions:
            sep = "" if f.startswith("ǁ") or f == "*" else "_"
            out.append(f"fairser.{module}.x{sep}{f}__mutmut_*" if f != "*" else f"fairser.{module}.*")
    return out


def module_of(mutant: str) -> str:
    """fairser.debias.dro.x_update_q__mutmut_3 -> debias.dro"""
    dotted = mutant.split("__mutmut_")[0].split(".")
    i = next(i for i, part in enumerate(dotted) if part.startswith("x"))
    return ".".join(dotted[1:i])


def mutmut_config(work: Path) -> str:
    files = sorted({f"src/fairser/{m.replace('.', '/')}.py" for m in CORE})
    lines = [
        "[tool.pytest.ini_options]",
        'testpaths = ["tests"]',
        'markers = ["slow: end-to-end"]',
        "[tool.mutmut]",
        'source_paths = ["src"]',
        # the stage tests run stages/*.py with params.yaml
        'also_copy = ["stages", "params.yaml", "dvc.yaml"]',
        f"only_mutate = {json.dumps(files)}",
        # A raise's message is checked by the bad-input tests; rewording it is no scientific bug.
        'do_not_mutate_patterns = ["^\\\\s*raise "]',
        f"pytest_add_cli_args_test_selection = {json.dumps(TESTS + ['-m', 'not slow'])}",
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]',
    ]
    return "\n".join(lines) + "\n"


def prepare(work: Path) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, work / name)
    (work / "pyproject.toml").write_text(mutmut_config(work))


def results(work: Path) -> dict[str, str]:
    """mutant name -> status, from mutmut's per-file .meta records."""
    out = {}
    for meta in (work / "mutants").rglob("*.py.meta"):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            out[name] = STATUS.get(code, "suspicious")
    return out


def selected(name: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatch
    return any(fnmatch(name, p) for p in patterns)


def describe(work: Path, mutant: str, env: dict) -> str:
    """The changed line of a mutant, from `mutmut show` (its diff's + line)."""
    diff = subprocess.run(["mutmut", "show", mutant], cwd=work, env=env, capture_output=True,
                          text=True).stdout
    plus = [line[1:].strip() for line in diff.splitlines()
            if line.startswith("+") and not line.startswith("+++")]
    return plus[0] if plus else "?"


def table(work: Path, env: dict, commit: str) -> str:
    patterns = mutant_patterns()
    status = {k: v for k, v in results(work).items() if selected(k, patterns)}
    by_module = defaultdict(lambda: defaultdict(list))
    for name, s in sorted(status.items()):
        by_module[module_of(name)][s].append(name)
    rows = ["| module | functions run | killed / total | score | survived | other (timeout, no tests) |",
            "|---|---|---|---|---|---|"]
    survivors = []
    for module in CORE:
        s = by_module.get(module, {})
        s.pop("not checked", None)  # mutants of functions left out of this run (--only)
        total = sum(len(v) for v in s.values())
        killed = len(s.get("killed", []))
        other = total - killed - len(s.get("survived", []))
        score = f"{100 * killed / total:.1f}%" if total else "-"
        functions = sorted({n.split("__mutmut_")[0].rsplit(".", 1)[1].lstrip("x").lstrip("_")
                            .replace("ǁ", ".").strip(".") for v in s.values() for n in v})
        rows.append(f"| {module} | {', '.join(functions) or 'not run'} | {killed} / {total} | {score} "
                    f"| {len(s.get('survived', []))} | {other} |")
        for name in s.get("survived", []):
            survivors.append(f"- `{name.split('.', 1)[1]}`: `{describe(work, name, env)}`")
        for kind in sorted(k for k in s if k not in ("killed", "survived")):
            survivors += [f"- `{n.split('.', 1)[1]}` ({kind})" for n in s[kind]]
    text = [MARKERS[0], f"Measured on commit `{commit}` by `python benchmarks/mutation.py` "
            "(mutmut 3, fast tests only).", "", *rows, "", "Survivors and unchecked mutants "
            "(the mutated line):", "", *(survivors or ["- none"]), MARKERS[1]]
    return "\n".join(text)


def write_doc(block: str) -> None:
    doc = DOC.read_text()
    start, end = doc.index(MARKERS[0]), doc.index(MARKERS[1]) + len(MARKERS[1])
    DOC.write_text(doc[:start] + block + doc[end:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/fairser-mutation"),
                    help="scratch folder (replaced on each run)")
    ap.add_argument("--children", type=int, default=2, help="test processes at once")
    ap.add_argument("--report", action="store_true", help="only rewrite the table from --work")
    ap.add_argument("--only", nargs="*", help="mutmut name globs instead of the whole CORE")
    ap.add_argument("--resume", action="store_true",
                    help="reuse --work (its mutants and test coverage) instead of a fresh copy")
    args = ap.parse_args()
    if shutil.which("mutmut") is None:
        sys.exit("error: mutmut is not installed: pip install -e '.[dev]'")
    # FAIRSER_REFERENCE_DATA (if set) passes through, made absolute: the tests run in --work.
    reference = os.environ.get("FAIRSER_REFERENCE_DATA", "").strip()
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           **({"FAIRSER_REFERENCE_DATA": str(Path(reference).resolve())} if reference else {}),
           # The stage tests' subprocesses import the unmutated copy (a mutant only lives in-process).
           "PYTHONPATH": str(args.work / "src")}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *COPY], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    commit += " (with uncommitted changes)" if dirty else ""
    if not args.report:
        if not args.resume:
            prepare(args.work)
        cmd = ["nice", "-n", "10", "mutmut", "run", "--max-children", str(args.children),
               *(args.only or mutant_patterns())]
        done = subprocess.run(cmd, cwd=args.work, env=env)
        if done.returncode != 0:
            sys.exit(f"error: mutmut run failed ({done.returncode}); see its output above")
    write_doc(table(args.work, env, commit))
    print(f"wrote the mutation table to {DOC}")


if __name__ == "__main__":
    main()
