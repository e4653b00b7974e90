"""A density fitted to the aggregate posterior: where a trained model's melodies actually live in z.

A VAE trained with a small KL weight (as melody VAEs are, to reconstruct well) leaves its posteriors
off the N(0, I) prior, so plain prior samples decode to melodies unlike the training music. Sampling
from a density fitted to the training set's posterior means keeps samples on the model's manifold
(the "ex-post density estimation" of Ghosh et al., 2020). Two densities are fitted and the one that
gives held-out latents the higher likelihood is kept:

- a full-covariance Gaussian (mean, Cholesky factor L);
- a variance-preserving kernel density over stored training latents c_i: z = m + a (c_i - m) + b L eps
  with a = 1 / sqrt(1 + h^2), b = h a, so draws keep the data's mean and covariance while staying near
  real melodies along the directions a single Gaussian blurs (key, mode). Held-out likelihood gives a
  first bandwidth h; `seqvae attributes` then narrows it to match unseen melodies' novelty
  (seqvae.evaluate.copying), and `bandwidth_rule` records which rule set it.

- a local kernel over the same centres: z = c_i + h sum_j w_j (c_j - c_i), w ~ N(0, I / K), over the K
  latents nearest c_i (whitened). Its draws move along the directions in which neighbouring melodies differ,
  where the global kernel's move in every direction the whole set spreads in; a decoder that is sharp off its
  training latents (the transformer's: its draws leap wider than the music) keeps closer to the music at the
  same novelty. `seqvae attributes` matches both to unseen melodies' novelty and keeps the one whose samples'
  features overlap those melodies' more.

A personalized model (`seqvae personalize`) has only a user's few windows, often fewer than the latent has
dims: `fit_personal` centres the kernel density on them and borrows the covariance's shape from the base
model's prior, shrunk towards the user's own as their windows grow in number.

It is stored beside the weights; a checkpoint without one falls back to N(0, I).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqvae.models import native
from seqvae.models.side_file import read_side_file, write_side_file

LATENT_PRIOR_FILE = "latent_prior.safetensors"
BANDWIDTHS = np.round(np.concatenate([np.arange(0.2, 1.0, 0.05), np.arange(1.0, 3.01, 0.25)]), 3)
MAX_CENTERS = 8000  # kept as float16: 4 MB for a 256-dim latent
MAX_HELD_OUT = 2000
KERNEL_MARGIN = 1.0  # nats per held-out latent the kernel density must gain to be worth its stored centres
PERSONAL_MIN_WINDOWS = 2  # a spread needs two latents
PERSONAL_BANDWIDTH = 0.5  # a personal kernel's bandwidth until one is chosen by the data-copying test
PERSONAL_RULE = "personal"  # how a personal prior's bandwidth rule begins, so describe() tells it apart
NEIGHBOURS = 16  # latents a local kernel's draw moves between (see the module docstring)
NEIGHBOUR_BLOCK = 1024  # centres per distance block when finding neighbours


def _kernel_log_likelihood(parts: tuple[np.ndarray, np.ndarray, np.ndarray], count: int, dims: int, h: float) -> float:
    """Mean log density of whitened held-out latents w under the variance-preserving kernel density over whitened
    centres c, from |w|^2, |c|^2 and w.c; the constant shared with the Gaussian (-log det L - Z/2 log 2 pi) is
    dropped."""
    ww, cc, wc = parts
    a = 1.0 / np.sqrt(1.0 + h * h)
    b = h * a
    e = -0.5 * np.maximum(ww + a * a * cc - 2.0 * a * wc, 0.0) / (b * b)
    top = e.max(axis=1, keepdims=True)
    log_sum = top[:, 0] + np.log(np.exp(e - top).sum(axis=1))
    return float((log_sum - dims * np.log(b) - np.log(count)).mean())


@dataclass
class LatentPrior:
    mean: np.ndarray  # [Z]
    scale_tril: np.ndarray  # [Z, Z], lower Cholesky factor of the covariance
    windows: int  # how many training melodies it was fitted on
    centers: np.ndarray | None = None  # [N, Z] kernel centres (training latents), None for the plain Gaussian
    bandwidth: float = 0.0  # h of the kernel density (see the module docstring)
    bandwidth_rule: str = "chosen by held-out likelihood"  # how h was set, for describe()
    neighbours: np.ndarray | None = None  # [N, K] int32: each centre's nearest centres, for a local kernel
    _packed: native.PackedAffine | None = field(default=None, repr=False, compare=False)

    @classmethod
    def fit(cls, mu: np.ndarray, jitter: float = 1e-4, seed: int = 0, max_centers: int | None = None) -> LatentPrior:
        """Fit to posterior means [N, Z]; `jitter` keeps the covariance positive definite. A share of the
        latents is held out to choose between the Gaussian and the kernel density and to pick the bandwidth.
        `max_centers` (default MAX_CENTERS) caps the kernel centres kept: 2 bytes x Z each in the file."""
        max_centers = MAX_CENTERS if max_centers is None else max_centers
        if max_centers < 1:
            raise ValueError(f"a kernel density needs at least one centre, got max_centers={max_centers}")
        mu = np.asarray(mu, dtype=np.float64)
        if mu.ndim != 2 or len(mu) <= mu.shape[1]:
            raise ValueError(
                f"fitting a latent prior needs more melodies than latent dims, got {mu.shape[0]} for z of "
                f"{mu.shape[-1]}: use more windows (--limit)"
            )
        gaussian = cls._gaussian(mu, jitter, len(mu))
        order = np.random.default_rng(seed).permutation(len(mu))
        held = min(MAX_HELD_OUT, len(mu) // 5)
        fit_part, held_part = mu[order[held:]], mu[order[:held]]
        if held < 8 or len(fit_part) <= mu.shape[1]:
            return gaussian
        reference = cls._gaussian(fit_part, jitter, len(fit_part))
        centers = fit_part[:max_centers]
        w, c = reference._whiten(held_part), reference._whiten(centers)
        parts = ((w ** 2).sum(1)[:, None], (c ** 2).sum(1)[None], w @ c.T)
        scores = {h: _kernel_log_likelihood(parts, len(c), w.shape[1], h) for h in BANDWIDTHS}
        best = max(scores, key=scores.get)
        if scores[best] < reference._gaussian_log_likelihood(held_part) + KERNEL_MARGIN:
            return gaussian
        return cls(gaussian.mean, gaussian.scale_tril, len(mu), centers.astype(np.float16), float(best))

    @classmethod
    def fit_personal(cls, mu: np.ndarray, base: LatentPrior | None, strength: float | None = None,
                     bandwidth: float = PERSONAL_BANDWIDTH, seed: int = 0, max_centers: int | None = None,
                     jitter: float = 1e-4) -> LatentPrior:
        """A kernel density over a user's posterior means [N, Z] (N >= 2, fewer than Z is fine). Its covariance is
        w * (the users' own) + (1 - w) * (the base prior's, scaled to the users' total variance), w = N / (N +
        `strength`) (default Z / 4): few windows say how far the user's melodies spread but not along which of Z
        directions, so the base model's directions stand in until there are enough of them. `base` None: N(0, I).
        At most `max_centers` (default MAX_CENTERS) latents, a random subset, are kept as centres."""
        mu = np.asarray(mu, dtype=np.float64)
        if mu.ndim != 2 or len(mu) < PERSONAL_MIN_WINDOWS:
            raise ValueError(f"a personal prior needs at least {PERSONAL_MIN_WINDOWS} latents, got "
                             f"{0 if mu.ndim != 2 else len(mu)}")
        if not np.all(np.isfinite(mu)):
            raise ValueError("the latents to fit contain NaN or infinity")
        dims = mu.shape[1]
        base_cov = np.eye(dims) if base is None else base.scale_tril @ base.scale_tril.T
        if base_cov.shape != (dims, dims):
            raise ValueError(f"the base prior has {base_cov.shape[0]} dims but the latents have {dims}")
        own = np.cov(mu, rowvar=False)
        weight = len(mu) / (len(mu) + (dims / 4 if strength is None else strength))
        scaled = base_cov * (np.trace(own) / np.trace(base_cov))
        cov = weight * own + (1.0 - weight) * scaled + jitter * np.eye(dims)
        keep = MAX_CENTERS if max_centers is None else max(1, max_centers)
        centers = mu
        if len(mu) > keep:
            centers = mu[np.sort(np.random.default_rng(seed).choice(len(mu), keep, replace=False))]
        rule = f"{PERSONAL_RULE}: own covariance weighted {weight:.2f}, the base prior's shape {1 - weight:.2f}"
        return cls(mu.mean(axis=0), np.linalg.cholesky(cov), len(mu), centers.astype(np.float16), float(bandwidth),
                   rule)

    @classmethod
    def _gaussian(cls, mu: np.ndarray, jitter: float, windows: int) -> LatentPrior:
        cov = np.cov(mu, rowvar=False) + jitter * np.eye(mu.shape[1])
        return cls(mu.mean(axis=0), np.linalg.cholesky(cov), windows)

    def _whiten(self, z: np.ndarray) -> np.ndarray:
        return np.linalg.solve(self.scale_tril, (np.asarray(z, np.float64) - self.mean).T).T

    def _gaussian_log_likelihood(self, z: np.ndarray) -> float:
        """Mean log density of z up to the constant both densities share (-log det L - Z/2 log 2 pi)."""
        return float((-0.5 * (self._whiten(z) ** 2).sum(axis=1)).mean())

    @property
    def z_size(self) -> int:
        return int(self.mean.shape[0])

    def describe(self) -> str:
        if self.centers is None:
            return f"a Gaussian fitted to {self.windows} training windows"
        if self.bandwidth_rule.startswith(PERSONAL_RULE):
            return (f"a personal kernel density over {len(self.centers)} of the user's {self.windows} windows "
                    f"(bandwidth {self.bandwidth:g}; {self.bandwidth_rule})")
        shape = "" if self.neighbours is None else f", local over each one's {self.neighbours.shape[1]} nearest"
        return (f"a kernel density over {len(self.centers)} of {self.windows} training latents{shape}, preferred to "
                f"a Gaussian by held-out likelihood (bandwidth {self.bandwidth:g}, {self.bandwidth_rule})")

    def with_bandwidth(self, bandwidth: float, rule: str = "set by hand") -> LatentPrior:
        """The same kernel density with another bandwidth; `rule` says why, for describe()."""
        if self.centers is None:
            raise ValueError("a Gaussian prior has no bandwidth; fit one on clustered latents to get a kernel density")
        if not np.isfinite(bandwidth) or bandwidth <= 0:
            raise ValueError(f"bandwidth {bandwidth!r} must be a positive number")
        return LatentPrior(self.mean, self.scale_tril, self.windows, self.centers, float(bandwidth), rule,
                           self.neighbours)

    def with_local_kernel(self, neighbours: int = NEIGHBOURS) -> LatentPrior:
        """The local kernel over the same centres: each centre's `neighbours` nearest centres in the whitened
        latent space, found once here."""
        if self.centers is None:
            raise ValueError("a Gaussian prior has no centres for a local kernel")
        if not 1 <= neighbours < len(self.centers):
            raise ValueError(f"a local kernel over {len(self.centers)} centres needs 1 to {len(self.centers) - 1} "
                             f"neighbours, got {neighbours}")
        w = self._whiten(self.centers).astype(np.float32)
        norms = (w ** 2).sum(axis=1)
        nearest = np.empty((len(w), neighbours), dtype=np.int32)
        for start in range(0, len(w), NEIGHBOUR_BLOCK):
            block = w[start:start + NEIGHBOUR_BLOCK]
            d = norms[start:start + len(block), None] + norms[None] - 2.0 * block @ w.T
            d[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf  # not its own neighbour
            nearest[start:start + len(block)] = np.argpartition(d, neighbours, axis=1)[:, :neighbours]
        return LatentPrior(self.mean, self.scale_tril, self.windows, self.centers, self.bandwidth,
                           self.bandwidth_rule, nearest)

    @property
    def kernel(self) -> str:
        """'gaussian', 'global' (the variance-preserving kernel) or 'local' (see the module docstring)."""
        return "gaussian" if self.centers is None else "global" if self.neighbours is None else "local"

    def _correlated_noise(self, eps: np.ndarray) -> np.ndarray:
        """eps @ L.T. Through the C affine where it is built, not numpy's BLAS: a multithreaded BLAS call leaves
        its threads spinning for a while afterwards, and they would fight the decoding kernel for the cores."""
        lib = native.library()
        if lib is None:
            return eps @ self.scale_tril.T
        if self._packed is None:
            self._packed = native.PackedAffine(lib, self.scale_tril.T.astype(np.float32))
        return self._packed(eps)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[n, Z] float32 draws; the same rng state gives the same latents."""
        mean = self.mean.astype(np.float32)
        if self.centers is None:
            return np.ascontiguousarray(mean + self._correlated_noise(rng.standard_normal((n, self.z_size))),
                                        dtype=np.float32)
        picked = rng.integers(0, len(self.centers), n)
        if self.neighbours is None:
            return self.sample_near(self.centers[picked], rng)
        weights = rng.standard_normal((n, self.neighbours.shape[1])).astype(np.float32)
        weights *= np.float32(self.bandwidth / np.sqrt(weights.shape[1]))
        out = self.centers[picked].astype(np.float32)
        for start in range(0, n, NEIGHBOUR_BLOCK):  # [rows, K, Z] offsets a block at a time: 16 MB, not n x 16 KB
            rows = slice(start, start + NEIGHBOUR_BLOCK)
            offsets = self.centers[self.neighbours[picked[rows]]].astype(np.float32) - out[rows, None]
            out[rows] += np.einsum("nk,nkz->nz", weights[rows], offsets)
        return out

    def sample_near(self, centers: np.ndarray, rng: np.random.Generator, bandwidth: float | None = None) -> np.ndarray:
        """One kernel draw around each of `centers` [n, Z] (latents of melodies chosen elsewhere, e.g. by their
        chords) at `bandwidth`: by default the kernel density's, or PERSONAL_BANDWIDTH for a Gaussian. The noise is
        the global kernel's even for a local one: a latent from elsewhere has no stored neighbours."""
        mean = self.mean.astype(np.float32)
        h = bandwidth if bandwidth is not None else self.bandwidth if self.centers is not None else PERSONAL_BANDWIDTH
        noise = self._correlated_noise(rng.standard_normal((len(centers), self.z_size)))
        a = np.float32(1.0 / np.sqrt(1.0 + h ** 2))
        b = np.float32(h) * a
        return np.ascontiguousarray(mean + a * (np.asarray(centers, dtype=np.float32) - mean) + b * noise,
                                    dtype=np.float32)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / LATENT_PRIOR_FILE
        tensors = {"mean": self.mean.astype(np.float32), "scale_tril": self.scale_tril.astype(np.float32)}
        if self.centers is not None:
            tensors["centers"] = self.centers.astype(np.float16)
        if self.neighbours is not None:
            tensors["neighbours"] = self.neighbours.astype(np.int32)
        return write_side_file(path, tensors, {"windows": str(self.windows), "bandwidth": str(self.bandwidth),
                                               "bandwidth_rule": self.bandwidth_rule})

    @classmethod
    def load(cls, directory: str | Path, z_size: int) -> LatentPrior | None:
        """The prior stored in a checkpoint directory, None if it has none; errors name a damaged file."""
        path = Path(directory) / LATENT_PRIOR_FILE
        if not path.is_file():
            return None
        def build(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> LatentPrior:
            return cls(tensors["mean"].astype(np.float64), tensors["scale_tril"].astype(np.float64),
                       int(metadata.get("windows", 0)), tensors.get("centers"),
                       float(metadata.get("bandwidth", 0.0)), metadata.get("bandwidth_rule", cls.bandwidth_rule),
                       tensors.get("neighbours"))

        prior = read_side_file(path, build)
        centers, bandwidth = prior.centers, prior.bandwidth
        if prior.mean.shape != (z_size,) or prior.scale_tril.shape != (z_size, z_size):
            raise ValueError(f"{path} is for a {prior.mean.shape[0]}-dim latent, the model has {z_size}; "
                             "recompute it with `seqvae attributes`")
        if centers is not None and (centers.ndim != 2 or centers.shape[1] != z_size or not len(centers)
                                    or not np.isfinite(bandwidth) or bandwidth <= 0):
            raise ValueError(f"{path} has a damaged kernel density (centres {centers.shape}, bandwidth {bandwidth}); "
                             "recompute it with `seqvae attributes`")
        near = prior.neighbours
        if near is not None and (centers is None or near.ndim != 2 or len(near) != len(centers) or not near.shape[1]
                                 or near.min() < 0 or near.max() >= len(centers)):
            raise ValueError(f"{path} has damaged local-kernel neighbours (shape {near.shape}); recompute it with "
                             "`seqvae attributes`")
        return prior
