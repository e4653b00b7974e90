"""Global batches of event windows by step: a pure function of (seed, step), so a resume and every data-parallel
rank see exactly the batches a single straight run would."""

from __future__ import annotations

import numpy as np

from seqvae.data.augment import random_transpose
from seqvae.models import ModelConfig


class BatchSource:
    """Global batches by step from an in-memory (or memory-mapped) [N, T] event array."""

    def __init__(self, events: np.ndarray, batch_size: int, seed: int, config: ModelConfig, codec) -> None:
        nbytes = events.shape[0] * events.shape[1]
        self.events = np.asarray(events) if nbytes < (1 << 30) else events
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

    def batch(self, step: int, sampling_prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(events int64 [B, T], eps float32 [B, Z], scheduled-sampling uniforms [B, T, 2] or None)."""
        rng = np.random.default_rng([self.seed, 1, step])
        events = np.asarray(self.events[np.sort(self.indices(step))], dtype=np.int64)
        if self.config.transpose_low or self.config.transpose_high:
            events = random_transpose(events, rng, self.codec, self.config.transpose_low, self.config.transpose_high)
        eps = rng.standard_normal((self.batch_size, self.config.z_size), dtype=np.float32)
        uniforms = rng.random((self.batch_size, events.shape[1], 2), dtype=np.float32) if sampling_prob > 0 else None
        return events, eps, uniforms
