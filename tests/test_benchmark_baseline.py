"""The speed benchmarks' Magenta figures: this machine's ../shared/baseline results file when there is one, the
recorded figures (said to be recorded) when there is not. A small results file stands in for a real run; nothing
here times anything."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location(
    "magenta_baseline", Path(__file__).resolve().parents[1] / "benchmarks" / "magenta_baseline.py")
baseline = sys.modules.setdefault(SPEC.name, importlib.util.module_from_spec(SPEC))  # dataclasses look it up there
SPEC.loader.exec_module(baseline)


def write_results(root: Path, **cases: float) -> Path:
    """A results file as run_baseline.sh writes one, with `cases` as median seconds by its keys."""
    path = root / "results" / f"{baseline.CONFIG}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"config": baseline.CONFIG, "machine": {"cpus": 2, "platform": "Linux-test"},
                                **{key: {"median_s": seconds, "min_s": seconds} for key, seconds in cases.items()}}))
    return path


MEASURED = {"sample_n1": 0.007, "encode_decode_n1": 0.0154, "interpolate_8": 0.057, "sample_n64": 0.090}


def test_results_file_is_read_when_present(tmp_path, monkeypatch):
    path = write_results(tmp_path, **MEASURED)
    for choice in ("auto", "results"):
        found = baseline.load_baseline(choice, tmp_path)
        assert found.measured and str(path) in found.describe() and "RECORDED" not in found.describe()
        assert found.ms == pytest.approx({"sample(1)": 7.0, "encode+decode": 15.4, "interpolate 8": 57.0,
                                          "sample(64)": 90.0})
    # a target set on the recorded machine keeps its speed-up over Magenta: 1.4 ms there, against 4.2 ms
    assert found.target_ms("sample(1)", 1.4) == pytest.approx(7.0 / 3)
    monkeypatch.setenv("BASELINE_DIR", str(tmp_path))
    assert baseline.load_baseline("auto").measured
    assert not baseline.load_baseline("recorded", tmp_path).measured


def test_recorded_figures_say_so(tmp_path):
    found = baseline.load_baseline("auto", tmp_path)
    assert not found.measured and found.ms == baseline.RECORDED_MS
    assert "RECORDED" in found.describe() and "2026-11-22" in found.describe() and "Zen 4" in found.describe()
    assert found.target_ms("sample(64)", 17.0) == pytest.approx(17.0)
    with pytest.raises(FileNotFoundError, match="run_baseline.sh"):
        baseline.load_baseline("results", tmp_path)
    with pytest.raises(ValueError, match="auto, run, results, recorded"):
        baseline.load_baseline("guess", tmp_path)


def test_an_interrupted_results_file_is_named(tmp_path):
    write_results(tmp_path, sample_n1=0.007)  # the run stopped after its first case
    with pytest.raises(ValueError, match="encode_decode_n1"):
        baseline.load_baseline("auto", tmp_path)


def test_training_rate_is_read_when_the_baseline_trained(tmp_path):
    path = write_results(tmp_path, **MEASURED)
    assert baseline.load_baseline("results", tmp_path).train_examples_per_s is None  # run with --train-steps 0
    results = json.loads(path.read_text())
    results[baseline.TRAIN_KEY] = {"median_s": 1.0, "examples_per_s": 64.0}
    path.write_text(json.dumps(results))
    assert baseline.load_baseline("results", tmp_path).train_examples_per_s == 64.0
    assert baseline.load_baseline("recorded", tmp_path).train_examples_per_s == baseline.RECORDED_TRAIN_EXAMPLES_PER_S
