"""Static checks on our own code: no shell, no pickle from data, safe tensor and YAML loading."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("src", "stages", "benchmarks") for p in (ROOT / d).rglob("*.py"))


def _calls(pattern: str) -> list[str]:
    hits = []
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line) and not line.lstrip().startswith("#"):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return hits


def test_there_is_code_to_check():
    assert any(p.name == "config.py" for p in SOURCES)


@pytest.mark.parametrize(
    "pattern",
    [r"shell\s*=\s*True", r"\bpickle\.loads?\(", r"(?<![.\w])eval\(", r"\bos\.system\(", r"yaml\.load\(",
     r"allow_pickle\s*=\s*True"],
)
def test_no_unsafe_call(pattern):
    assert _calls(pattern) == []


def test_every_torch_load_is_weights_only():
    unsafe = [hit for hit in _calls(r"torch\.load\(") if "weights_only=True" not in hit]
    assert unsafe == []


def test_params_are_read_only_through_config():
    # One reader (ruamel.yaml, YAML 1.2, safe) for every stage, the one DVC uses too.
    hits = [hit for hit in _calls(r"\byaml\.(safe_)?load\(|YAML\(") if not hit.startswith("benchmarks/")]
    assert hits and all(hit.startswith("src/fairser/config.py:") for hit in hits), hits


def test_the_params_reader_runs_no_tag(tmp_path):
    from fairser import config

    marker = tmp_path / "marker"
    path = tmp_path / "params.yaml"
    path.write_text(f'seed: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(config.ParamsError, match="not valid YAML"):
        config.read_yaml(path)
    assert not marker.exists()
