"""Magenta MusicVAE's inference timings for the speed benchmarks: measured in this sitting, or recorded.

These machines differ from session to session, so a speed target holds as a ratio to Magenta measured on the
same machine in the same sitting. `bash ../shared/baseline/run_baseline.sh cat-mel_2bar_small` (see its README)
writes $BASELINE_DIR/results/cat-mel_2bar_small.json (default /tmp/magenta-baseline); the benchmarks read it
(`--baseline results`), run the baseline first (`--baseline run`, minutes on its first install), or take the figures
recorded below (`--baseline recorded`), and say which. `auto`, the default, reads the results file where there is
one and falls back to the recorded figures where there is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CHOICES = ("auto", "run", "results", "recorded")
HELP = ("Magenta's times: auto (this machine's results file, else the recorded figures), run (measure them now), "
        "results (the file, or fail), recorded")
CONFIG = "cat-mel_2bar_small"  # Magenta's twin of seqvae's mel_2bar_small, the shape the targets are set on
# Magenta's cases as run_baseline.sh's results file names them.
RESULT_KEYS = {"sample(1)": "sample_n1", "encode+decode": "encode_decode_n1", "interpolate 8": "interpolate_8",
               "sample(64)": "sample_n64"}
RECORDED_MS = {"sample(1)": 4.2, "encode+decode": 10.2, "interpolate 8": 16.8, "sample(64)": 34.7}
RECORDED_ON = "a 2-core AMD EPYC Zen 4 (AVX-512, AVX512-BF16) on 2026-11-22"
RECORDED_TRAIN_EXAMPLES_PER_S = 256.0  # Magenta's training rate at batch 64 as the training issue quoted it
TRAIN_KEY = "train_step_bs64"
REPO = Path(__file__).resolve().parents[1]


@dataclass
class MagentaBaseline:
    ms: dict[str, float]  # median milliseconds by case (keys of RESULT_KEYS)
    train_examples_per_s: float | None  # a training step at batch 64; None where the baseline ran no training
    measured: bool  # True: run on this machine (results file); False: the recorded figures
    source: str  # one line for the benchmark's output: where the figures come from

    def target_ms(self, case: str, recorded_target_ms: float) -> float:
        """An issue target set as milliseconds on the recorded machine, as the same speed-up over Magenta here."""
        return recorded_target_ms * self.ms[case] / RECORDED_MS[case]

    def describe(self) -> str:
        if self.measured:
            return f"Magenta {CONFIG}: {self.source}; targets kept as the same speed-ups over Magenta"
        return f"Magenta {CONFIG}: RECORDED figures, not measured on this machine: {self.source}"


def results_path(baseline_dir: str | Path | None = None) -> Path:
    """Where run_baseline.sh writes its results for CONFIG."""
    root = baseline_dir or os.environ.get("BASELINE_DIR") or Path(os.environ.get("TMPDIR", "/tmp")) / "magenta-baseline"
    return Path(root) / "results" / f"{CONFIG}.json"


def read_results(path: str | Path) -> MagentaBaseline:
    """The medians in a run_baseline.sh results file, with when and on what it ran; a clear error for a file that
    lacks them (an interrupted run)."""
    path = Path(path)
    results = json.loads(path.read_text())
    missing = [key for key in RESULT_KEYS.values() if "median_s" not in results.get(key, {})]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: rerun run_baseline.sh {CONFIG}")
    ms = {case: results[key]["median_s"] * 1e3 for case, key in RESULT_KEYS.items()}
    train = results.get(TRAIN_KEY, {}).get("examples_per_s")
    machine = results.get("machine", {})
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
    source = f"measured by run_baseline.sh, {path} ({when}, {machine.get('cpus', '?')} CPUs, " \
             f"{machine.get('platform', 'platform not recorded')})"
    if machine.get("cpus") not in (None, os.cpu_count()):
        source += f"; NOTE it saw {machine['cpus']} CPUs and this machine has {os.cpu_count()}: another machine?"
    return MagentaBaseline(ms, None if train is None else float(train), True, source)


def recorded(reason: str) -> MagentaBaseline:
    return MagentaBaseline(dict(RECORDED_MS), RECORDED_TRAIN_EXAMPLES_PER_S, False, f"{RECORDED_ON} ({reason})")


def baseline_script() -> Path | None:
    """shared/baseline/run_baseline.sh beside the repository or a folder above it (worktrees sit deeper)."""
    for folder in REPO.parents:
        script = folder / "shared" / "baseline" / "run_baseline.sh"
        if script.is_file():
            return script
    return None


def load_baseline(choice: str, baseline_dir: str | Path | None = None) -> MagentaBaseline:
    """Magenta's figures as `choice` (one of CHOICES) asks; "results" and "run" fail rather than fall back."""
    if choice not in CHOICES:
        raise ValueError(f"--baseline {choice!r}: choose one of {', '.join(CHOICES)}")
    path = results_path(baseline_dir)
    if choice == "recorded":
        return recorded("asked for with --baseline recorded")
    if choice == "run":
        script = baseline_script()
        if script is None:
            raise FileNotFoundError(f"no shared/baseline/run_baseline.sh beside {REPO}: install the baseline there, "
                                    "or use --baseline recorded")
        env = dict(os.environ, BASELINE_DIR=str(path.parents[1]))
        subprocess.run(["bash", str(script), CONFIG], check=True, env=env)
    if path.is_file():
        return read_results(path)
    if choice == "auto":
        return recorded(f"no {path}; `--baseline run` measures Magenta here first")
    raise FileNotFoundError(f"no {path}: run `bash ../shared/baseline/run_baseline.sh {CONFIG}` first, "
                            "or use --baseline run / recorded")
