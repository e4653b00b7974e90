"""metrics.csv: one row per logged train step and per validation, kept in step with the checkpoint on resume."""

from __future__ import annotations

import csv
from pathlib import Path

METRICS_FILE = "metrics.csv"
METRIC_COLUMNS = [  # stage (train rows): 'latent' while recon is the latent stage's NLL, else 'events'
    "step", "split", "stage", "loss", "recon", "kl", "accuracy", "greedy_accuracy", "active_units", "beta",
    "learning_rate", "sampling_prob", "grad_norm", "examples_per_s", "elapsed_s",
]


class MetricsLog:
    """metrics.csv (append-only; a resume first drops rows past the checkpoint) and TensorBoard if installed."""

    def __init__(self, run_dir: Path, resume_step: int | None, enabled: bool) -> None:
        self.path = run_dir / METRICS_FILE
        self.enabled = enabled
        self.board = None
        if not enabled:
            return
        rows = []
        if resume_step is not None and self.path.is_file():  # steps past the checkpoint are about to be redone
            with self.path.open(newline="") as handle:
                rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= resume_step]
        self._rewrite(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self.board = None

    def _rewrite(self, rows: list[dict]) -> None:
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, METRIC_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, METRIC_COLUMNS).writerow({k: _fmt(row.get(k)) for k in METRIC_COLUMNS})
        if self.board is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.board.add_scalar(f"{row['split']}/{key}", value, row["step"])

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """metrics.csv rows with numbers parsed (empty cells become None)."""
    with (Path(run_dir) / METRICS_FILE).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for row in rows:
        parsed = {}
        for key, value in row.items():
            if key in ("split", "stage"):
                parsed[key] = value
            elif value == "":
                parsed[key] = None
            else:
                number = float(value)
                parsed[key] = int(number) if key in ("step", "active_units") else number
        out.append(parsed)
    return out

