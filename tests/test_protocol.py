"""A clone stands on its own: the protocol reference is docs/PROTOCOL.md, every citation of it
names a section it has, nothing points outside the repository, the reference-data helper skips
with the files missing and where they are published, and the paper comparison names its version."""

import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import PUBLISHED, REFERENCE_ENV, missing_reference_message, reference_folder
from fairser import report
from fairser.corpus import METADATA

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "docs" / "PROTOCOL.md"
# What a user's clone holds of the project's text (issue 21: README, docs, code, params, tests).
SCANNED = ["README.md", "params.yaml", "dvc.yaml", "docs", "src", "stages", "tests", "benchmarks"]


def _texts():
    for name in SCANNED:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.suffix in {".py", ".md", ".yaml", ".yml", ".toml", ".txt"})
        for f in files:
            if "__pycache__" not in f.parts:
                yield f, f.read_text(encoding="utf-8")


def _sections() -> set[str]:
    """Section numbers of docs/PROTOCOL.md: "1", ..., "4b", ... from its `## N.` / `### Nb.` headings."""
    return set(re.findall(r"^#{2,3} (\d+[a-z]?)\. ", PROTOCOL.read_text(), flags=re.M))


def test_no_file_points_outside_the_repository():
    outside = re.compile(r"\.\./shared|/work/shared|\bSPEC\.md\b|\bSPEC (section|\d)")
    this = Path(__file__).resolve()
    hits = [f"{f.relative_to(ROOT)}:{i}: {line.strip()}" for f, text in _texts() if f.resolve() != this
            for i, line in enumerate(text.splitlines(), 1) if outside.search(line)]
    assert hits == []


def test_every_protocol_citation_names_a_section_it_has():
    sections = _sections()
    assert {"1", "2", "3", "4", "4b", "5", "6", "7", "8", "9"} <= sections
    cited = re.compile(r"PROTOCOL(?:\.md)? sections? (\d+[a-z]?)(?:(?: and |-|, )(\d+[a-z]?))?")
    unknown = []
    for f, text in _texts():
        for i, line in enumerate(text.splitlines(), 1):
            for match in cited.finditer(line):
                unknown += [f"{f.relative_to(ROOT)}:{i}: {n}" for n in match.groups() if n and n not in sections]
    assert unknown == []


def test_the_reference_variable_is_read_and_made_absolute(monkeypatch, tmp_path):
    monkeypatch.delenv(REFERENCE_ENV, raising=False)
    assert reference_folder() is None
    monkeypatch.setenv(REFERENCE_ENV, "  ")
    assert reference_folder() is None
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(REFERENCE_ENV, "ref")
    assert reference_folder() == tmp_path / "ref"


def test_unset_reference_data_names_every_file_and_both_public_sources():
    message = missing_reference_message(None, list(METADATA))
    assert message.startswith(f"{REFERENCE_ENV} is not set;")
    assert "crema-d/VideoDemographics.csv" in message
    assert all(f"labels_consensus_{f}.csv" in message for f in range(1, 6))
    for name, base in PUBLISHED.values():
        assert name in message and base in message
    assert f"{PUBLISHED['crema_d_raw'][1]}/VideoDemographics.csv" in message
    assert f"{PUBLISHED['emo_superb_raw'][1]}/data/CREMA-D/Primary/" in message


def test_a_partial_reference_folder_names_only_what_it_lacks(tmp_path):
    for key in METADATA:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_text("x")
    assert missing_reference_message(tmp_path, list(METADATA)) is None
    (tmp_path / "emo-superb/CREMA-D/Primary/labels_consensus_3.csv").unlink()
    message = missing_reference_message(tmp_path, list(METADATA))
    assert str(tmp_path) in message and "labels_consensus_3.csv" in message
    assert "labels_consensus_1.csv" not in message and "VideoDemographics" not in message
    assert PUBLISHED["emo_superb_raw"][1] in message and PUBLISHED["crema_d_raw"][1] not in message


def test_the_published_sources_are_the_commits_the_download_pins():
    # The skip message and the download stage must point at the same files: the raw URLs are
    # params.yaml's corpus.urls defaults, whose commits docs/PROTOCOL.md names.
    text = PROTOCOL.read_text()
    for _, base in PUBLISHED.values():
        owner_repo, commit = re.match(r"https://raw\.githubusercontent\.com/(.+)/([0-9a-f]{40})$", base).groups()
        assert f"https://github.com/{owner_repo}" in text and commit in text


def test_the_paper_comparison_names_the_first_arxiv_version():
    # Version 1's Overall gains: pseudo +33.33% and k-means +26.44% in TPR gap; a later version's
    # "over 28%" would not match these rows.
    assert report.PAPER_VERSION == "arXiv 2505.14449v1"
    assert report.PAPER_TABLE1[("Gain", "pseudo")][2] == pytest.approx(0.3333)
    assert report.PAPER_TABLE1[("Gain", "k-means")][2] == pytest.approx(0.2644)
    row = {"kind": "run", "method": "ERM", "supervision": "none",
           **dict(zip(report.TABLE1_METRICS, (0.6, 0.8, 0.3, 0.1)))}
    md = report.table1_vs_paper_markdown(pd.DataFrame([row]), k=16, notice=None)
    title, body = md.splitlines()[0], md
    assert "arXiv 2505.14449v1" in title
    assert "first version" in body and "over 28%" in body
    assert "version 1" in PROTOCOL.read_text() and "over 28%" in PROTOCOL.read_text()


def test_a_label_set_beyond_crema_d_is_named_with_its_place_in_emo_superb():
    message = missing_reference_message(None, ["emo-superb/IEMOCAP/labels_consensus_1.csv"])
    assert f"{PUBLISHED['emo_superb_raw'][1]}/data/IEMOCAP/labels_consensus_1.csv" in message
    with pytest.raises(ValueError, match="not a reference file"):
        missing_reference_message(None, ["elsewhere/file.csv"])
