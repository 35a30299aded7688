"""tests/helpers.py: the tests read the params.yaml the project ships, never the workspace's
(`dvc exp run -S idi.k=32` leaves the experiment's values there)."""

import subprocess

import pytest

from helpers import shipped_params, shipped_params_text


def git(repo, *args):
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args],
                   cwd=repo, check=True, capture_output=True)


def test_a_git_work_tree_gives_the_committed_params_not_the_edited_file(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "params.yaml").write_text("idi:\n  k: 16\ntrain:\n  lr: 1e-4\n")
    git(tmp_path, "add", "params.yaml")
    git(tmp_path, "commit", "-qm", "shipped")
    (tmp_path / "params.yaml").write_text("idi:\n  k: 32\ntrain:\n  lr: 1e-4\n")  # as `dvc exp run -S` leaves it
    assert shipped_params_text(tmp_path) == "idi:\n  k: 16\ntrain:\n  lr: 1e-4\n"
    assert shipped_params(tmp_path) == {"idi": {"k": 16}, "train": {"lr": 1e-4}}  # YAML 1.2, as DVC reads


def test_the_committed_params_of_a_project_inside_a_larger_repository(tmp_path):
    # HEAD:./params.yaml is the file next to the tests' root, not one at the repository's top.
    (tmp_path / "project").mkdir()
    for path, text in [("params.yaml", "top: 1\n"), ("project/params.yaml", "project: 1\n")]:
        (tmp_path / path).write_text(text)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "shipped")
    (tmp_path / "project" / "params.yaml").write_text("project: 2\n")
    assert shipped_params(tmp_path / "project") == {"project": 1}


@pytest.mark.parametrize("repository", ["none", "nothing committed"])
def test_without_a_committed_copy_the_file_itself_is_read(tmp_path, repository):
    # A tarball copy of the project: no git, or a repository whose HEAD lacks params.yaml.
    if repository == "nothing committed":
        git(tmp_path, "init", "-q")
    (tmp_path / "params.yaml").write_text("idi:\n  k: 32\n")
    assert shipped_params_text(tmp_path) == "idi:\n  k: 32\n"
    assert shipped_params(tmp_path) == {"idi": {"k": 32}}


def test_each_call_gives_a_fresh_dict_a_test_may_change(tmp_path):
    (tmp_path / "params.yaml").write_text("idi:\n  k: 16\n")
    shipped_params(tmp_path)["idi"]["k"] = 32
    assert shipped_params(tmp_path) == {"idi": {"k": 16}}
