"""The latent stage of a two-level model: every training window's segment posteriors, computed when a run starts
or resumes inside the stage (deterministic, so a resume sees the same table).

With the segment level trained and fixed, its encoder maps each window to 8 segment posteriors that never
change, so the upper level can learn from a table of them instead of running the segment encoder on every
batch. Built corpora hop by one bar, so most 2-bar segments recur across windows: encoding each distinct
segment once makes the table several times cheaper than encoding the windows.
"""

from __future__ import annotations

import numpy as np
import torch

from seqvae.data.augment import random_transpose
from seqvae.models import ModelConfig, SequenceVAE

COPIES = 3  # the windows as they are plus two fixed random transpositions: the latent stage's augmentation
CHUNK = 1024  # segments per encoder call


class SegmentLatents:
    """Segment posteriors (mu, sigma) of the training windows under `model`'s frozen segment encoder."""

    def __init__(self, model: SequenceVAE, events: np.ndarray, codec, seed: int, progress: bool = False) -> None:
        config: ModelConfig = model.config
        self.config, self.seed = config, seed
        events = np.asarray(events, dtype=np.int64)
        copies = [events] + [
            random_transpose(events, np.random.default_rng([seed, 3, copy]), codec, config.transpose_low,
                             config.transpose_high)
            for copy in range(1, COPIES)
        ]
        segments = np.concatenate(copies).reshape(-1, config.segment_steps).astype(np.int8)
        distinct, inverse = np.unique(segments, axis=0, return_inverse=True)
        self.index = inverse.reshape(-1, config.segments)  # [windows * COPIES, bars] rows of the table
        self.mu, self.sigma = self._encode(model, distinct, progress)

    @staticmethod
    def _encode(model: SequenceVAE, segments: np.ndarray, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        from tqdm import tqdm

        encoder = model.encoder.segment
        if encoder.sigma is None:
            raise ValueError(f"{model.config.name!r} has no segment sigma head: set latent_train_steps in its config")
        mus, sigmas = [], []
        was_training = encoder.training
        encoder.eval()
        with torch.no_grad():
            for start in tqdm(range(0, len(segments), CHUNK), desc=f"segment latents ({len(segments)} segments)",
                              unit="chunk", disable=not progress, leave=False):
                x = torch.as_tensor(segments[start:start + CHUNK], dtype=torch.long, device=model.device)
                mu, sigma = encoder(x)
                mus.append(mu.float().cpu().numpy())
                sigmas.append(sigma.float().cpu().numpy())
        encoder.train(was_training)
        return np.concatenate(mus), np.concatenate(sigmas)

    def batch(self, step: int, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mu [B, S, Zs], sigma [B, S, Zs], eps [B, Z]) for `step`: a pure function of (seed, step), like the
        event batches, so resume stays exact and data-parallel ranks can slice one global batch."""
        rng = np.random.default_rng([self.seed, 4, step])
        rows = self.index[rng.integers(0, len(self.index), size=batch_size)]
        eps = rng.standard_normal((batch_size, self.config.z_size), dtype=np.float32)
        return self.mu[rows], self.sigma[rows], eps
