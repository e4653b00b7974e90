"""Transposition augmentation keeps every melody inside the vocabulary."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from seqvae.codec import EventCodec
from seqvae.codec.events import FIRST_NOTE_ON
from seqvae.data.augment import random_transpose

CODEC = EventCodec()


@given(st.lists(st.lists(st.integers(0, CODEC.num_classes - 1), min_size=16, max_size=16), min_size=1, max_size=8),
       st.integers(0, 2**32 - 1))
def test_random_transpose_stays_in_range_and_keeps_rhythm(rows, seed):
    batch = np.array(rows)
    out = random_transpose(batch, np.random.default_rng(seed), CODEC)
    assert out.min() >= 0 and out.max() < CODEC.num_classes
    onsets = batch >= FIRST_NOTE_ON
    assert np.array_equal(out >= FIRST_NOTE_ON, onsets)
    assert np.array_equal(out[~onsets], batch[~onsets])
    shifts = np.where(onsets, out - batch, 0)
    for row, mask in zip(shifts, onsets, strict=False):
        assert len(set(row[mask].tolist())) <= 1  # one shift per melody: intervals kept
        assert all(-5 <= s <= 6 for s in row[mask])


def test_random_transpose_uses_the_whole_interval():
    batch = np.full((2000, 4), FIRST_NOTE_ON + 40)
    out = random_transpose(batch, np.random.default_rng(0), CODEC)
    assert set((out[:, 0] - batch[:, 0]).tolist()) == set(range(-5, 7))
