""".ci/lock_matches_code.py: which `dvc status` entries make CI fail (hand-made status dicts)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("lock_matches_code", ROOT / ".ci" / "lock_matches_code.py")
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)

TRACKED = {"src/fairser/corpus.py", "src/fairser/debias/gdro.py", "params.yaml", "data/runs/.gitignore"}


def test_absent_data_dependencies_and_outputs_pass():
    status = {"split": [{"changed deps": {"data/corpus/clips.csv": "deleted", "data/params": "deleted"}},
                        {"changed outs": {"data/split": "not in cache"}}, "always changed"],
              "evaluate": [{"changed deps": {"data/runs": "modified"}}]}  # a folder of no tracked code
    assert lock.stale(status, TRACKED) == []


def test_a_modified_code_file_code_folder_or_param_fails_naming_it():
    status = {"download": [{"changed deps": {"src/fairser/corpus.py": "modified"}}],
              "train_gender": [{"changed deps": {"src/fairser/debias": "modified",
                                                 "params.yaml": {"train.epochs": "modified"}}}]}
    assert lock.stale(status, TRACKED) == ["download: src/fairser/corpus.py modified",
                                           "train_gender: src/fairser/debias modified",
                                           "train_gender: params.yaml train.epochs modified"]
