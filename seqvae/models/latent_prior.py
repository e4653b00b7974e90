"""A Gaussian fitted to the aggregate posterior: where a trained model's melodies actually live in z.

A VAE trained with a small KL weight (as melody VAEs are, to reconstruct well) leaves its posteriors
off the N(0, I) prior, so plain prior samples decode to melodies unlike the training music. Sampling
from a full-covariance Gaussian fitted to the training set's posterior means keeps samples on the
model's manifold (the "ex-post density estimation" of Ghosh et al., 2020). It is stored beside the
weights; a checkpoint without one falls back to N(0, I).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from seqvae.models import native

LATENT_PRIOR_FILE = "latent_prior.safetensors"


@dataclass
class LatentPrior:
    mean: np.ndarray  # [Z]
    scale_tril: np.ndarray  # [Z, Z], lower Cholesky factor of the covariance
    windows: int  # how many training melodies it was fitted on
    _packed: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def fit(cls, mu: np.ndarray, jitter: float = 1e-4) -> LatentPrior:
        """Fit to posterior means [N, Z]; `jitter` keeps the covariance positive definite."""
        mu = np.asarray(mu, dtype=np.float64)
        if mu.ndim != 2 or len(mu) <= mu.shape[1]:
            raise ValueError(
                f"fitting a latent prior needs more melodies than latent dims, got {mu.shape[0]} for z of "
                f"{mu.shape[-1]}: use more windows (--limit)"
            )
        cov = np.cov(mu, rowvar=False) + jitter * np.eye(mu.shape[1])
        return cls(mu.mean(axis=0), np.linalg.cholesky(cov), len(mu))

    @property
    def z_size(self) -> int:
        return int(self.mean.shape[0])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[n, Z] float32 draws; the same rng state gives the same latents."""
        eps = rng.standard_normal((n, self.z_size))
        lib = native.library()
        if lib is None:
            return (self.mean + eps @ self.scale_tril.T).astype(np.float32)
        # The C affine, not numpy's BLAS: a multithreaded BLAS call leaves its threads spinning for a while
        # afterwards, and they would then fight the decoding kernel's threads for the same cores.
        if self._packed is None:
            self._packed = (native.pack_panels(self.scale_tril.T.astype(np.float32)),
                            np.pad(self.mean.astype(np.float32), (0, -self.z_size % native.LANES)))
        panels, bias = self._packed
        out = np.empty((n, len(bias)), np.float32)
        eps32 = np.ascontiguousarray(eps, dtype=np.float32)
        lib.affine(n, self.z_size, eps32.ctypes.data, panels.ctypes.data, len(bias), bias.ctypes.data,
                   out.ctypes.data, 0)
        return np.ascontiguousarray(out[:, : self.z_size])

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / LATENT_PRIOR_FILE
        tmp = path.with_suffix(".tmp")
        save_file({"mean": self.mean.astype(np.float32), "scale_tril": self.scale_tril.astype(np.float32)},
                  str(tmp), metadata={"windows": str(self.windows)})
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, directory: str | Path, z_size: int) -> LatentPrior | None:
        """The prior stored in a checkpoint directory, None if it has none; errors name a damaged file."""
        path = Path(directory) / LATENT_PRIOR_FILE
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), "np") as handle:
                windows = int((handle.metadata() or {}).get("windows", 0))
                mean, tril = handle.get_tensor("mean"), handle.get_tensor("scale_tril")
            prior = cls(mean.astype(np.float64), tril.astype(np.float64), windows)
        except Exception as exc:  # noqa: BLE001 - any damage is reported the same way
            raise ValueError(f"{path} is damaged ({exc}); recompute it with `seqvae attributes`") from None
        if prior.mean.shape != (z_size,) or prior.scale_tril.shape != (z_size, z_size):
            raise ValueError(f"{path} is for a {prior.mean.shape[0]}-dim latent, the model has {z_size}; "
                             "recompute it with `seqvae attributes`")
        return prior
