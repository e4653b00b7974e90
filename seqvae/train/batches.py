"""Global batches of event windows by step: a pure function of (seed, step), so a resume and every data-parallel
rank see exactly the batches a single straight run would."""

from __future__ import annotations

import numpy as np

from seqvae.codec.chords import transpose_chords
from seqvae.data.augment import random_shifts, transpose_rows
from seqvae.models import ModelConfig


class BatchSource:
    """Global batches by step from an in-memory (or memory-mapped) [N, T] event array, with the windows' chord
    classes [N, T] for a chord model (transposed with their melodies)."""

    def __init__(self, events: np.ndarray, batch_size: int, seed: int, config: ModelConfig, codec,
                 chords: np.ndarray | None = None) -> None:
        nbytes = events.shape[0] * events.shape[1]
        self.events = np.asarray(events) if nbytes < (1 << 30) else events
        self.chords = None if chords is None else (np.asarray(chords) if nbytes < (1 << 30) else chords)
        self.batch_size, self.seed, self.config, self.codec = batch_size, seed, config, codec
        self.per_epoch = max(1, len(self.events) // batch_size)
        self._epoch, self._order = -1, None

    def indices(self, step: int) -> np.ndarray:
        n, b = len(self.events), self.batch_size
        if n < b:  # tiny corpora: draw with replacement
            return np.random.default_rng([self.seed, 2, step]).integers(0, n, size=b)
        epoch, position = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, 0, epoch]).permutation(n)
            self._epoch = epoch
        return self._order[position * b:(position + 1) * b]

    def batch(
        self, step: int, sampling_prob: float
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
        """(events int64 [B, T], chords int64 [B, T] or None without them, eps float32 [B, Z], scheduled-sampling
        uniforms [B, T, 2] or None)."""
        rng = np.random.default_rng([self.seed, 1, step])
        rows = np.sort(self.indices(step))
        events = np.asarray(self.events[rows], dtype=np.int64)
        chords = None if self.chords is None else np.asarray(self.chords[rows], dtype=np.int64)
        if self.config.transpose_low or self.config.transpose_high:
            shifts = random_shifts(events, rng, self.codec, self.config.transpose_low, self.config.transpose_high)
            events = transpose_rows(events, shifts)
            if chords is not None:
                chords = transpose_chords(chords, shifts).astype(np.int64)
        eps = rng.standard_normal((self.batch_size, self.config.z_size), dtype=np.float32)
        uniforms = rng.random((self.batch_size, events.shape[1], 2), dtype=np.float32) if sampling_prob > 0 else None
        return events, chords, eps, uniforms

    def prior_rows(self, step: int) -> tuple[np.ndarray, np.ndarray] | None:
        """For z dropout: which rows (bool [B]) decode from a prior draw, and the draws (float32 [B, Z]); None when
        the config drops none. A stream of its own, so runs without dropout keep their batches."""
        if not self.config.z_dropout:
            return None
        rng = np.random.default_rng([self.seed, 3, step])
        dropped = rng.random(self.batch_size) < self.config.z_dropout
        return dropped, rng.standard_normal((self.batch_size, self.config.z_size), dtype=np.float32)
