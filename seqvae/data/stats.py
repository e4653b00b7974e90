"""What a built corpus holds: windows per split and meter, notes per window, pitches, duplicates, skips.

Everything is counted with vectorized numpy over the memory-mapped arrays, in chunks, so a corpus of
millions of windows is summarized in seconds without loading it whole.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqvae.codec.events import FIRST_NOTE_ON
from seqvae.data.corpus import SPLITS, Corpus, load_corpus

CHUNK_ROWS = 1 << 16
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def pitch_name(pitch: int) -> str:
    """MIDI pitch -> scientific name, middle C = C4 (60)."""
    return f"{_NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


@dataclass
class SplitStats:
    windows: int
    distinct: int
    sources: int
    meters: dict[str, int]
    notes_mean: float
    notes_min: int
    notes_max: int
    pitch_low: int | None
    pitch_high: int | None


@dataclass
class CorpusStats:
    path: Path
    steps: int
    family: str
    codec_range: tuple[int, int]
    splits: dict[str, SplitStats]
    distinct_all: int  # distinct windows over all splits together
    pitch_counts: np.ndarray  # [128] note onsets per MIDI pitch, all splits
    notes_per_window: np.ndarray  # [steps + 1] windows holding 0..steps notes, all splits
    files: dict[str, int] = field(default_factory=dict)  # found / used, when the build recorded them
    skipped: dict[str, int] = field(default_factory=dict)  # skipped files by reason
    dropped: dict[str, int] = field(default_factory=dict)  # dropped windows by reason

    @property
    def windows(self) -> int:
        return sum(s.windows for s in self.splits.values())

    @property
    def meters(self) -> dict[str, int]:
        total: Counter = Counter()
        for split in self.splits.values():
            total.update(split.meters)
        return dict(total)


def _row_keys(events: np.ndarray) -> np.ndarray:
    """Each window as one opaque value, so np.unique counts distinct windows without a Python loop."""
    rows = np.ascontiguousarray(events, dtype=np.int8)
    return rows.view(np.dtype((np.void, rows.shape[1]))).ravel()


def _meter_label(pair: np.ndarray) -> str:
    return f"{int(pair[0])}/{int(pair[1])}"


def _skip_counts(meta: dict) -> tuple[dict[str, int], dict[str, int]]:
    files = meta.get("files")
    if isinstance(files, dict):
        skipped = files.get("skipped", {})
        counts = {k: int(files[k]) for k in ("found", "used") if isinstance(files.get(k), int)}
    else:
        skipped, counts = meta.get("skipped", {}), {}
    return {str(k): int(v) for k, v in (skipped or {}).items()}, counts


def corpus_stats(corpus: Corpus | str | Path) -> CorpusStats:
    """Summarize a built corpus (a path or an opened Corpus)."""
    if not isinstance(corpus, Corpus):
        corpus = load_corpus(corpus)
    codec, steps = corpus.codec, corpus.steps
    pitch_counts = np.zeros(128, dtype=np.int64)
    notes_per_window = np.zeros(steps + 1, dtype=np.int64)
    splits: dict[str, SplitStats] = {}
    all_keys = []
    for name in SPLITS:
        split = corpus.split(name)
        n = len(split)
        if split.events.ndim != 2 or (n and split.events.shape[1] != steps):
            raise ValueError(f"{corpus.path}/{name}.npy has shape {split.events.shape}, not [N, {steps}]: rebuild it")
        split_pitches = np.zeros(128, dtype=np.int64)
        split_notes = np.zeros(steps + 1, dtype=np.int64)
        for lo in range(0, n, CHUNK_ROWS):
            chunk = np.asarray(split.events[lo : lo + CHUNK_ROWS])
            onsets = chunk >= FIRST_NOTE_ON
            split_notes += np.bincount(onsets.sum(axis=1), minlength=steps + 1)
            pitches = chunk[onsets].astype(np.int64) - FIRST_NOTE_ON + codec.min_pitch
            split_pitches += np.bincount(pitches, minlength=128)[:128]
        keys = np.unique(_row_keys(np.asarray(split.events))) if n else np.zeros(0, dtype=object)
        all_keys.append(keys)
        meter_pairs, meter_counts = (
            np.unique(np.asarray(split.meters), axis=0, return_counts=True) if n else (np.zeros((0, 2)), [])
        )
        played = np.nonzero(split_pitches)[0]
        counts_by_notes = np.arange(steps + 1)
        splits[name] = SplitStats(
            windows=n,
            distinct=int(len(keys)),
            sources=int(len(np.unique(np.asarray(split.sources)))) if n else 0,
            meters={_meter_label(p): int(c) for p, c in zip(meter_pairs, meter_counts, strict=True)},
            notes_mean=float((split_notes * counts_by_notes).sum() / n) if n else 0.0,
            notes_min=int(counts_by_notes[split_notes > 0].min()) if n else 0,
            notes_max=int(counts_by_notes[split_notes > 0].max()) if n else 0,
            pitch_low=int(played.min()) if played.size else None,
            pitch_high=int(played.max()) if played.size else None,
        )
        pitch_counts += split_pitches
        notes_per_window += split_notes
    non_empty = [k for k in all_keys if len(k)]
    distinct_all = int(len(np.unique(np.concatenate(non_empty)))) if non_empty else 0
    skipped, files = _skip_counts(corpus.meta)
    dropped = {str(k): int(v) for k, v in (corpus.meta.get("windows_dropped") or {}).items()}
    return CorpusStats(
        path=corpus.path, steps=steps, family=corpus.family, codec_range=(codec.min_pitch, codec.max_pitch),
        splits=splits, distinct_all=distinct_all, pitch_counts=pitch_counts, notes_per_window=notes_per_window,
        files=files, skipped=skipped, dropped=dropped,
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return [line.format(*header), line.format(*("-" * w for w in widths))] + [line.format(*r) for r in rows]


def _pitch_span(low: int | None, high: int | None) -> str:
    if low is None or high is None:
        return "-"
    return f"{pitch_name(low)}..{pitch_name(high)} ({low}..{high})"


def format_stats(stats: CorpusStats) -> str:
    """The terminal report: one table per topic, counts with thousands separators."""
    lo, hi = stats.codec_range
    out = [f"corpus {stats.path}: {stats.steps}-step windows, {stats.family} family, codec pitches {lo}..{hi}"]
    if stats.files:
        out.append("files: " + ", ".join(f"{v:,} {k}" for k, v in stats.files.items()))
    out.append("")
    rows = []
    for name, s in stats.splits.items():
        rows.append([name, f"{s.windows:,}", f"{s.distinct:,}", f"{s.sources:,}", f"{s.notes_mean:.1f}",
                     f"{s.notes_min}..{s.notes_max}", _pitch_span(s.pitch_low, s.pitch_high)])
    played = np.nonzero(stats.pitch_counts)[0]
    counts = np.arange(stats.steps + 1)
    filled = counts[stats.notes_per_window > 0]
    mean_notes = (stats.notes_per_window * counts).sum() / stats.windows if stats.windows else 0.0
    rows.append([
        "all", f"{stats.windows:,}", f"{stats.distinct_all:,}", f"{sum(s.sources for s in stats.splits.values()):,}",
        f"{mean_notes:.1f}", f"{filled.min()}..{filled.max()}" if filled.size else "0..0",
        _pitch_span(int(played.min()), int(played.max())) if played.size else "-",
    ])
    out += _table(["split", "windows", "distinct", "sources", "notes/window", "min..max", "pitch range"], rows)
    meters = sorted(stats.meters, key=lambda m: (-stats.meters[m], m))
    if meters:
        out.append("")
        meter_rows = [[m] + [f"{stats.splits[s].meters.get(m, 0):,}" for s in stats.splits] + [f"{stats.meters[m]:,}"]
                      for m in meters]
        out += _table(["meter", *stats.splits, "all"], meter_rows)
    for title, counts in (("skipped files", stats.skipped), ("dropped windows", stats.dropped)):
        out.append("")
        if counts:
            out += _table([title, "count"], [[k, f"{v:,}"] for k, v in sorted(counts.items(), key=lambda kv: -kv[1])])
        else:
            out.append(f"{title}: none recorded")
    return "\n".join(out)


def plot_stats(stats: CorpusStats, path: str | Path) -> Path:
    """Histograms of pitch, notes per window and meters as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"--plot {path}: the histograms are written as PNG; give a file name ending in .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [2.2, 1.4, 1]})
    played = np.nonzero(stats.pitch_counts)[0]
    lo, hi = (int(played.min()), int(played.max())) if played.size else stats.codec_range
    pitches = np.arange(lo, hi + 1)
    ax = axes[0]
    ax.bar(pitches, stats.pitch_counts[lo : hi + 1], width=0.85, color="#3b6ea5")
    ax.set_xticks([p for p in pitches if p % 12 == 0] or [lo], [pitch_name(p) for p in pitches if p % 12 == 0] or
                  [pitch_name(lo)])
    ax.set_title(f"pitch of note onsets ({int(stats.pitch_counts.sum()):,} notes)")
    ax.set_xlabel("pitch")
    ax.set_ylabel("notes")
    ax = axes[1]
    nonzero = np.nonzero(stats.notes_per_window)[0]
    top = int(nonzero.max()) if nonzero.size else stats.steps
    ax.bar(np.arange(top + 1), stats.notes_per_window[: top + 1], width=0.85, color="#5a9e6f")
    ax.set_title(f"notes per {stats.steps}-step window ({stats.windows:,} windows)")
    ax.set_xlabel("notes in window")
    ax.set_ylabel("windows")
    ax = axes[2]
    meters = sorted(stats.meters, key=lambda m: -stats.meters[m])
    bottom = np.zeros(len(meters))
    for name, colour in zip(stats.splits, ("#3b6ea5", "#e0a030", "#b04a4a"), strict=False):
        counts = np.array([stats.splits[name].meters.get(m, 0) for m in meters], dtype=float)
        ax.bar(meters, counts, bottom=bottom, label=name, color=colour)
        bottom += counts
    for ax in axes:
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    ax = axes[2]
    ax.set_title("windows per meter")
    ax.set_xlabel("meter")
    ax.legend()
    fig.suptitle(f"{stats.path.name}: {stats.steps}-step {stats.family} corpus")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
