"""Atomic outputs: a failed stage leaves nothing that looks complete."""

import pytest

from fairser.io import atomic_dir, write_json


def test_atomic_dir_appears_only_when_the_block_succeeds(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_failure_keeps_the_previous_output_and_removes_the_partial_one(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("killed")
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_success_replaces_the_previous_output_whole(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("stale")
    with atomic_dir(out) as tmp:
        (tmp / "fresh.txt").write_text("fresh")
    assert [p.name for p in out.iterdir()] == ["fresh.txt"]


def test_write_json_is_sorted_and_leaves_no_temporary(tmp_path):
    write_json(tmp_path / "m.json", {"b": 1, "a": {"c": 2}})
    assert (tmp_path / "m.json").read_text().index('"a"') < (tmp_path / "m.json").read_text().index('"b"')
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_leftovers_of_a_killed_run_are_cleared_on_the_next_one(tmp_path):
    leftover = tmp_path / ".out.tmp-99999"
    leftover.mkdir()
    (leftover / "half.bin").write_bytes(b"\0")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
