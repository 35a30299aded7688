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


# --- reading: one line naming the file and what was expected -------------------------------------

from fairser.errors import InputError  # noqa: E402
from fairser.io import read_csv, read_text  # noqa: E402


@pytest.mark.parametrize("content, message", [
    (None, r"x\.csv: no such file; expected columns a, b"),
    (b"", r"x\.csv: empty file \(no header line\); expected columns a, b"),
    (b"a,b\n1,\xe9\n", r"x\.csv: not UTF-8 text \(line 2: byte 0xe9\); save it as UTF-8; expected columns a, b"),
    (b"a,c\n1,2\n", r"x\.csv: missing column\(s\) b"),
])
def test_read_csv_bad_files_are_one_line_naming_file_and_columns(tmp_path, content, message):
    if content is not None:
        (tmp_path / "x.csv").write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_csv(tmp_path / "x.csv", ["a", "b"])


def test_read_csv_of_a_folder_or_without_columns_still_says_what_was_expected(tmp_path):
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(InputError, match=r"d\.csv: is a folder, not a file; expected columns a$"):
        read_csv(tmp_path / "d.csv", ["a"])
    with pytest.raises(InputError, match=r"d\.csv: is a folder, not a file; expected one row per speaker$"):
        read_csv(tmp_path / "d.csv", [], expected="one row per speaker")
    (tmp_path / "e.csv").write_bytes(b"")
    with pytest.raises(InputError, match=r"e\.csv: empty file \(no header line\); expected a CSV with a header line"):
        read_csv(tmp_path / "e.csv", [])
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfa,b\n1,2\n")
    assert list(read_csv(tmp_path / "bom.csv", ["a", "b"]).columns) == ["a", "b"]


def test_read_text_rejects_empty_and_non_utf8_files_naming_what_was_expected(tmp_path):
    (tmp_path / "c.json").write_bytes(b" \n")
    with pytest.raises(InputError, match=r"c\.json: empty file; expected a JSON object"):
        read_text(tmp_path / "c.json", "a JSON object")
    (tmp_path / "c.json").write_bytes(b'{"a":\n"\xff"}')
    with pytest.raises(InputError, match=r"c\.json: not UTF-8 text \(line 2: byte 0xff\)"):
        read_text(tmp_path / "c.json", "a JSON object")
    with pytest.raises(InputError, match=r"d\.json: no such file; expected a JSON object$"):
        read_text(tmp_path / "d.json", "a JSON object")
    with pytest.raises(InputError, match=r": is a folder, not a file; expected a JSON object$"):
        read_text(tmp_path, "a JSON object")
    (tmp_path / "c.json").write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert read_text(tmp_path / "c.json", "a JSON object") == '{"a": 1}'
