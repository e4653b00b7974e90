"""Training-time augmentation on event arrays (numpy, so any trainer can use it)."""

from __future__ import annotations

import numpy as np

from seqvae.codec.events import FIRST_NOTE_ON, EventCodec


def random_transpose(
    events: np.ndarray, rng: np.random.Generator, codec: EventCodec, low: int = -5, high: int = 6
) -> np.ndarray:
    """Shift each row by a random number of semitones in [low, high] that keeps it in the codec range.

    The allowed interval is narrowed per row, so a melody near the range edge still moves,
    just less far, and no note ever leaves the vocabulary.
    """
    batch = np.asarray(events, dtype=np.int64)
    return transpose_rows(batch, random_shifts(batch, rng, codec, low, high))


def transpose_rows(events: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each row's note-ons moved by its own shift [B] (from `random_shifts`, which keeps them in range)."""
    batch = np.asarray(events, dtype=np.int64)
    return np.where(batch >= FIRST_NOTE_ON, batch + np.asarray(shifts, dtype=np.int64)[:, None], batch)


def random_shifts(
    events: np.ndarray, rng: np.random.Generator, codec: EventCodec, low: int = -5, high: int = 6
) -> np.ndarray:
    """The semitones [B] random_transpose moves each row by: a caller that must move something else with the
    melody (its chords, seqvae.codec.chords.transpose_chords) draws them here and applies both."""
    batch = np.asarray(events, dtype=np.int64)
    if batch.ndim != 2:
        raise ValueError(f"expected a batch of event rows [B, T], got shape {batch.shape}")
    onsets = batch >= FIRST_NOTE_ON
    top_class = codec.num_classes - 1
    lowest = np.where(onsets, batch, top_class).min(axis=1)
    highest = np.where(onsets, batch, FIRST_NOTE_ON).max(axis=1)
    lo = np.maximum(low, FIRST_NOTE_ON - lowest)
    hi = np.minimum(high, top_class - highest)
    hi = np.maximum(hi, lo)  # a row spanning the whole range stays put (lo == hi == 0 then)
    return lo + np.floor(rng.random(len(batch)) * (hi - lo + 1)).astype(np.int64)
