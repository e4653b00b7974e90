"""Are generated melodies copies? Distance to the nearest training window, and a kernel bandwidth chosen by it.

A generative model should neither copy its training set nor wander off it: its samples should sit as far
from the training windows as genuinely unseen melodies do (the data-copying test of Meehan, Chaudhuri and
Dasgupta, 2020). That same comparison picks the latent prior's kernel bandwidth. Held-out likelihood alone
picks a wide kernel in a 256-dimensional latent space, whose draws land between melodies and decode to
notes outside any key; the narrowest kernel whose samples are still as novel as unseen melodies keeps the
music and copies no more than the corpus copies itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from seqvae.models.latent_prior import BANDWIDTHS, LatentPrior

CHUNK_BYTES = 64 << 20  # memory per comparison block


@dataclass
class CopyingReport:
    """Mean distance to the nearest reference window (share of steps that differ) and the share of exact copies."""

    mean_distance: float
    exact_copies: float
    windows: int

    def to_dict(self) -> dict:
        return asdict(self)


def nearest_distance(events: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each window [N, T], the Hamming distance (share of steps) to its nearest window in `reference` [M, T]."""
    events, reference = np.asarray(events), np.asarray(reference)
    if events.ndim != 2 or reference.ndim != 2 or events.shape[1] != reference.shape[1]:
        raise ValueError(f"nearest distance needs [N, T] windows against [M, T] windows, got {events.shape} and "
                         f"{reference.shape}")
    if len(reference) == 0:
        raise ValueError("nearest distance needs at least one reference window")
    steps = events.shape[1]
    small = np.int16 if max(events.max(initial=0), reference.max(initial=0)) < 2**15 else np.int64
    events, reference = events.astype(small), reference.astype(small)
    rows = max(1, CHUNK_BYTES // max(1, len(reference) * steps))
    out = np.empty(len(events))
    for i in range(0, len(events), rows):
        differ = (events[i:i + rows, None, :] != reference[None]).sum(axis=2)
        out[i:i + rows] = differ.min(axis=1) / steps
    return out


def copying_report(events: np.ndarray, reference: np.ndarray) -> CopyingReport:
    d = nearest_distance(events, reference)
    return CopyingReport(float(d.mean()), float(np.mean(d == 0)), len(d))


@dataclass
class BandwidthChoice:
    bandwidth: float
    target: float  # held-out melodies' mean distance to the reference
    tried: dict[float, float]  # bandwidth -> samples' mean distance

    @property
    def reached(self) -> float:
        """The samples' mean distance at the chosen bandwidth."""
        return self.tried[self.bandwidth]


def match_held_out_novelty(
    prior: LatentPrior, decode: Callable[[np.ndarray], np.ndarray], reference: np.ndarray, held_out: np.ndarray,
    samples: int = 1000, seed: int = 0,
) -> BandwidthChoice:
    """The smallest grid bandwidth whose decoded samples are on average at least as far from `reference` (the
    training windows the prior was fitted to) as the `held_out` melodies are.

    Every bandwidth draws with the same random numbers, so the distance grows smoothly with it and a bisection
    over the grid finds the crossing. The widest bandwidth is the answer when none reaches the target.
    """
    if prior.centers is None:
        raise ValueError("only a kernel density has a bandwidth to choose; this prior is a single Gaussian")
    target = float(nearest_distance(held_out, reference).mean())
    tried: dict[float, float] = {}

    def distance(h: float) -> float:
        if h not in tried:
            z = prior.with_bandwidth(h).sample(samples, np.random.default_rng(seed))
            tried[h] = float(nearest_distance(decode(z), reference).mean())
        return tried[h]

    grid = sorted(float(h) for h in BANDWIDTHS)
    lo, hi = 0, len(grid) - 1
    if distance(grid[hi]) < target:
        lo = hi
    while lo < hi:
        mid = (lo + hi) // 2
        if distance(grid[mid]) >= target:
            hi = mid
        else:
            lo = mid + 1
    distance(grid[lo])
    return BandwidthChoice(grid[lo], target, dict(sorted(tried.items())))


def fit_novelty_matched_prior(
    mu: np.ndarray, reference: np.ndarray, held_out: np.ndarray, held_name: str,
    decode: Callable[[np.ndarray], np.ndarray], max_centers: int | None = None,
) -> tuple[LatentPrior, BandwidthChoice | None]:
    """The latent prior for training latents `mu` of windows `reference`; a kernel density gets the bandwidth of
    `match_held_out_novelty` against `held_out` (named `held_name` in its description). None for the choice when
    there is nothing to choose: a single Gaussian, or no held-out melodies."""
    prior = LatentPrior.fit(mu, max_centers=max_centers)
    if prior.centers is None or len(held_out) == 0:
        return prior, None
    choice = match_held_out_novelty(prior, decode, reference, held_out)
    rule = (f"its samples differ from their nearest training window in {choice.reached:.0%} of steps, "
            f"{held_name} melodies in {choice.target:.0%}")
    return prior.with_bandwidth(choice.bandwidth, rule), choice
