"""Melody features on event arrays (numpy only): what evaluation compares and attribute vectors steer.

Every function takes one window [T] (returns a float) or a batch [N, T] (returns float64 [N]). Events
use the codec's classes (0 hold, 1 note-off, 2.. note-on from `min_pitch`); only the in-key ratio needs
`min_pitch` to know absolute pitch classes. A window without notes gets 0 for every feature except
rest_ratio (1).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from seqvae.codec.events import FIRST_NOTE_ON, NOTE_OFF
from seqvae.codec.scales import MODES

MAJOR_SCALE = MODES["major"]
NATURAL_MINOR_SCALE = MODES["minor"]


def _batch(events: np.ndarray) -> tuple[np.ndarray, bool]:
    arr = np.asarray(events)
    if arr.ndim not in (1, 2):
        raise ValueError(f"features take events [T] or [N, T], got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"events must be integers (event classes), got dtype {arr.dtype}")
    return (arr[None, :] if arr.ndim == 1 else arr).astype(np.int64), arr.ndim == 1


def _result(values: np.ndarray, single: bool) -> float | np.ndarray:
    values = values.astype(np.float64)
    return float(values[0]) if single else values


def _onset_pitches(row: np.ndarray) -> np.ndarray:
    return row[row >= FIRST_NOTE_ON] - FIRST_NOTE_ON  # relative pitch; differences need no min_pitch


def note_density(events: np.ndarray) -> float | np.ndarray:
    """Note onsets per step (0..1): 0.25 is one note per quarter note."""
    batch, single = _batch(events)
    return _result((batch >= FIRST_NOTE_ON).mean(axis=1), single)


def pitch_range(events: np.ndarray) -> float | np.ndarray:
    """Highest minus lowest pitch, in semitones."""
    batch, single = _batch(events)
    onsets = batch >= FIRST_NOTE_ON
    high = np.where(onsets, batch, -1).max(axis=1)
    low = np.where(onsets, batch, np.iinfo(np.int64).max).min(axis=1)
    return _result(np.where(onsets.any(axis=1), high - low, 0), single)


def mean_interval(events: np.ndarray) -> float | np.ndarray:
    """Mean absolute interval between consecutive notes, in semitones (0 with fewer than two notes)."""
    batch, single = _batch(events)
    out = np.zeros(len(batch))
    for i, row in enumerate(batch):
        pitches = _onset_pitches(row)
        if len(pitches) > 1:
            out[i] = np.abs(np.diff(pitches)).mean()
    return _result(out, single)


def _offbeat_share(events: np.ndarray, period: int, phase: int) -> float | np.ndarray:
    batch, single = _batch(events)
    onsets = batch >= FIRST_NOTE_ON
    positions = np.arange(batch.shape[1]) % period == phase
    count = onsets.sum(axis=1)
    share = (onsets & positions).sum(axis=1) / np.maximum(count, 1)
    return _result(np.where(count > 0, share, 0.0), single)


def syncopation_16th(events: np.ndarray) -> float | np.ndarray:
    """Share of notes starting on an off-beat 16th (odd step)."""
    return _offbeat_share(events, 2, 1)


def syncopation_8th(events: np.ndarray) -> float | np.ndarray:
    """Share of notes starting on an off-beat 8th (the 'and' of a beat: step 2 of every 4)."""
    return _offbeat_share(events, 4, 2)


def _key_masks() -> np.ndarray:
    """[24, 12] pitch-class membership of the major and natural minor keys on all 12 tonics."""
    masks = np.zeros((24, 12), dtype=bool)
    for tonic in range(12):
        for j, scale in enumerate((MAJOR_SCALE, NATURAL_MINOR_SCALE)):
            masks[2 * tonic + j, [(tonic + d) % 12 for d in scale]] = True
    return masks


KEY_MASKS = _key_masks()  # the keys in_key_ratio and the benchmarks test melodies against


def in_key_ratio(events: np.ndarray, min_pitch: int = 21) -> float | np.ndarray:
    """Share of notes inside the best-fitting major or minor key (the key that contains the most notes)."""
    batch, single = _batch(events)
    onsets = batch >= FIRST_NOTE_ON
    classes = (batch - FIRST_NOTE_ON + min_pitch) % 12
    histogram = np.zeros((len(batch), 12))
    rows, _ = np.nonzero(onsets)
    np.add.at(histogram, (rows, classes[onsets]), 1.0)
    count = histogram.sum(axis=1)
    best = (histogram @ KEY_MASKS.T.astype(np.float64)).max(axis=1)
    return _result(np.where(count > 0, best / np.maximum(count, 1), 0.0), single)


def sounding(events: np.ndarray) -> np.ndarray:
    """bool [N, T] (or [T]): a note sounds at this step (from its onset up to a note-off or the next onset)."""
    batch, single = _batch(events)
    state = np.zeros(len(batch), dtype=bool)
    out = np.zeros(batch.shape, dtype=bool)
    for t in range(batch.shape[1]):
        column = batch[:, t]
        state = np.where(column >= FIRST_NOTE_ON, True, np.where(column == NOTE_OFF, False, state))
        out[:, t] = state
    return out[0] if single else out


def rest_ratio(events: np.ndarray) -> float | np.ndarray:
    """Share of steps where no note sounds."""
    batch, single = _batch(events)
    return _result(1.0 - sounding(batch).mean(axis=1), single)


ATTRIBUTES: dict[str, Callable[[np.ndarray], float | np.ndarray]] = {
    "note_density": note_density,
    "mean_interval": mean_interval,
    "syncopation_16th": syncopation_16th,
    "syncopation_8th": syncopation_8th,
    "pitch_range": pitch_range,
    "in_key_ratio": in_key_ratio,
}
"""The attribute functions attribute vectors are computed for (MusicVAE section 5.4's set plus range and key)."""

EVAL_FEATURES: dict[str, Callable[[np.ndarray], float | np.ndarray]] = {
    "note_density": note_density,
    "pitch_range": pitch_range,
    "mean_interval": mean_interval,
    "in_key_ratio": in_key_ratio,
    "rest_ratio": rest_ratio,
}
"""Features whose distributions `seqvae eval` compares between prior samples and real melodies."""
