"""Piano-roll and latent-map pictures (PNG) with matplotlib's Agg canvas.

Uses `Figure` + `FigureCanvasAgg` directly rather than pyplot, so drawing never touches a global
backend or needs a display, and is safe from a server thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from seqvae.codec import Melody, Note
from seqvae.codec.midi import MidiScore

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
LINE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def pitch_name(pitch: int) -> str:
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _draw_notes(ax, notes: Sequence[Note], offset: int, colour: str) -> None:
    for note in notes:
        ax.add_patch(_rect(offset + note.start, note.pitch - 0.4, note.end - note.start, 0.8, colour))


def _rect(x: float, y: float, w: float, h: float, colour: str):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, facecolor=colour, edgecolor="black", linewidth=0.4)


def _decorate(ax, total_steps: int, bar_starts: Sequence[int], segment_starts: Sequence[int],
              pitches: Sequence[int]) -> None:
    low, high = (min(pitches), max(pitches)) if pitches else (60, 72)
    low, high = low - 2, high + 2
    ax.set_xlim(0, max(total_steps, 1))
    ax.set_ylim(low - 0.5, high + 0.5)
    for x in bar_starts:
        ax.axvline(x, color="#bbbbbb", linewidth=0.6, zorder=0)
    for x in segment_starts:
        ax.axvline(x, color="#444444", linewidth=1.6, zorder=0)
    ticks = [p for p in range(low, high + 1) if p % 12 in (0, 7)]
    if len(ticks) < 2:  # a narrow melody: name every other semitone instead
        ticks = list(range(low, high + 1, 2))
    ax.set_yticks(ticks)
    ax.set_yticklabels([pitch_name(p) for p in ticks], fontsize=7)
    every = max(1, len(bar_starts) // 24)  # thin the labels on long rolls
    ax.set_xticks(list(bar_starts)[::every])
    ax.set_xticklabels([str(i + 1) for i in range(0, len(bar_starts), every)], fontsize=7)
    ax.set_xlabel("bar", fontsize=7)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(str(path), dpi=110)
    return path


def piano_roll_png(rows: Sequence[Sequence[Melody]] | Sequence[Melody] | Melody, path: str | Path,
                   row_titles: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Draw melodies as a piano roll: each row's melodies back to back, one row per panel.

    A flat list of melodies is one row (an interpolation reads left to right); a list of lists
    is a grid. Thin lines mark bars, thick lines the joins between melodies.
    """
    if isinstance(rows, Melody):
        rows = [[rows]]
    elif rows and isinstance(rows[0], Melody):
        rows = [list(rows)]  # type: ignore[list-item]
    rows = [list(r) for r in rows]  # type: ignore[union-attr]
    if not rows or not any(rows):
        raise ValueError("nothing to draw: no melodies given")
    width = max(sum(m.n_steps for m in row) for row in rows)
    fig = Figure(figsize=(min(4 + width / 16, 24), 1.3 + 1.7 * len(rows)))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for index, (ax, row) in enumerate(zip(axes, rows, strict=True)):
        offset, bars, joins, pitches = 0, [], [], []
        for i, melody in enumerate(row):
            colour = LINE_COLOURS[i % 2]
            notes = melody.notes()
            _draw_notes(ax, notes, offset, colour)
            pitches += [n.pitch for n in notes]
            bars += list(range(offset, offset + melody.n_steps, melody.meter.steps_per_bar))
            if i:
                joins.append(offset)
            offset += melody.n_steps
        _decorate(ax, width, bars, joins, pitches)
        if row_titles is not None and index < len(row_titles):
            ax.set_title(row_titles[index], fontsize=8, loc="left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def score_png(score: MidiScore, path: str | Path, title: str | None = None) -> Path:
    """A whole MIDI file as read: every pitched line in its own colour, bars from its meters."""
    fig = Figure(figsize=(min(4 + score.n_steps / 16, 30), 4.5))
    ax = fig.subplots()
    pitches: list[int] = []
    handles = []
    for index, line in enumerate(line for line in score.lines if not line.is_drum and line.notes):
        colour = LINE_COLOURS[index % len(LINE_COLOURS)]
        _draw_notes(ax, line.notes, 0, colour)
        pitches += [n.pitch for n in line.notes]
        handles.append(_rect(0, 0, 0, 0, colour))
        handles[-1].set_label(f"{index + 1}: {line.name}")
    bars = []
    for i, (start, meter) in enumerate(score.meters):
        end = score.meters[i + 1][0] if i + 1 < len(score.meters) else score.n_steps
        if meter is not None:
            bars += list(range(start, max(end, start + 1), meter.steps_per_bar))
    _decorate(ax, score.n_steps, bars, [], pitches)
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper right")
    ax.set_title(title or "", fontsize=9, loc="left")
    fig.tight_layout()
    return _save(fig, path)


def latent_map_png(coords: np.ndarray, path: str | Path, explained: Sequence[float],
                   groups: Sequence[str] | None = None, values: np.ndarray | None = None, value_name: str = "",
                   title: str | None = None) -> Path:
    """A 2-D scatter of latent points, coloured by group (e.g. file) or by a continuous value."""
    fig = Figure(figsize=(7.5, 6))
    ax = fig.subplots()
    if values is not None:
        sc = ax.scatter(coords[:, 0], coords[:, 1], c=values, cmap="viridis", s=14, alpha=0.85)
        fig.colorbar(sc, ax=ax, label=value_name)
    else:
        names = list(groups) if groups is not None else ["all"] * len(coords)
        unique = list(dict.fromkeys(names))
        cmap = _categorical(len(unique))
        index = {name: i for i, name in enumerate(unique)}
        colours = [cmap[index[name]] for name in names]
        ax.scatter(coords[:, 0], coords[:, 1], c=colours, s=14, alpha=0.85)
        if 1 < len(unique) <= 20:
            for name in unique:
                ax.scatter([], [], color=cmap[index[name]], label=name, s=14)
            ax.legend(fontsize=6, loc="best", markerscale=1.2)
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of variance)")
    ax.set_title(title or "latent map", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _categorical(n: int) -> list:
    from matplotlib import colormaps

    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["hsv"](i / n) for i in range(n)]
