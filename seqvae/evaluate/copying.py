"""Are generated melodies copies? Distance to the nearest training window, and a kernel bandwidth chosen by it.

A generative model should neither copy its training set nor wander off it: its samples should sit as far
from the training windows as genuinely unseen melodies do (the data-copying test of Meehan, Chaudhuri and
Dasgupta, 2020). That same comparison picks the latent prior's kernel bandwidth, and a chord bank's.
Held-out likelihood alone picks a wide kernel in a 256-dimensional latent space, whose draws land between
melodies and decode to notes outside any key; the narrowest kernel whose samples are still as novel as
unseen melodies keeps the music and copies no more than the corpus copies itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from seqvae.evaluate.prior import compare_features
from seqvae.models.latent_prior import BANDWIDTHS, LatentPrior

CHUNK_BYTES = 64 << 20  # memory per comparison block
COPY_SLACK = 0.01  # exact copies allowed beyond twice the held-out melodies' share (copies_within)


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


def copies_within(samples_share: float, data_share: float) -> bool:
    """Whether samples copy their training windows exactly no more than unseen melodies happen to: at most twice
    the held-out share plus one point (a mean distance alone can hide a share of note-for-note copies)."""
    return samples_share <= 2 * data_share + COPY_SLACK


@dataclass
class BandwidthChoice:
    bandwidth: float
    target: float  # held-out melodies' mean distance to the reference
    tried: dict[float, float]  # bandwidth -> samples' mean distance
    target_copies: float = 0.0  # held-out melodies' share of exact copies of a reference window
    copies: dict[float, float] = field(default_factory=dict)  # bandwidth -> samples' share of exact copies
    kernel: str = ""  # the kernel density's kernel, where fit_novelty_matched_prior compared two
    weakest_overlap: float | None = None  # its samples' lowest feature overlap with the held-out melodies
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)  # decoded at the chosen bandwidth

    @property
    def reached(self) -> float:
        """The samples' mean distance at the chosen bandwidth."""
        return self.tried[self.bandwidth]


def match_held_out_novelty(
    prior: LatentPrior, decode: Callable[[np.ndarray], np.ndarray], reference: np.ndarray, held_out: np.ndarray,
    samples: int = 1000, seed: int = 0,
) -> BandwidthChoice:
    """The smallest grid bandwidth whose `samples` decoded draws of the kernel density `prior` are on average at
    least as far from `reference` (the training windows the prior was fitted to) as the `held_out` melodies are."""
    if prior.centers is None:
        raise ValueError("only a kernel density has a bandwidth to choose; this prior is a single Gaussian")
    return match_novelty(lambda h: prior.with_bandwidth(h).sample(samples, np.random.default_rng(seed)), decode,
                         reference, held_out)


def match_novelty(
    draw: Callable[[float], np.ndarray], decode: Callable[[np.ndarray], np.ndarray], reference: np.ndarray,
    held_out: np.ndarray,
) -> BandwidthChoice:
    """The smallest grid bandwidth h whose latents `draw(h)`, decoded, are on average at least as far from
    `reference` as the `held_out` melodies are, and copy a reference window exactly no more often than
    `copies_within` allows: any kernel draw whose spread grows with h (a latent prior's, a chord bank's).

    `draw` should use the same random numbers at every bandwidth, so both measures move smoothly with it and a
    bisection over the grid finds the crossing. The widest bandwidth is the answer when none passes.
    """
    held = nearest_distance(held_out, reference)
    target, target_copies = float(held.mean()), float(np.mean(held == 0))
    tried: dict[float, float] = {}
    copies: dict[float, float] = {}
    decoded: dict[float, np.ndarray] = {}

    def novel(h: float) -> bool:
        if h not in tried:
            decoded[h] = decode(draw(h))
            d = nearest_distance(decoded[h], reference)
            tried[h], copies[h] = float(d.mean()), float(np.mean(d == 0))
        return tried[h] >= target and copies_within(copies[h], target_copies)

    grid = sorted(float(h) for h in BANDWIDTHS)
    lo, hi = 0, len(grid) - 1
    if not novel(grid[hi]):
        lo = hi
    while lo < hi:
        mid = (lo + hi) // 2
        if novel(grid[mid]):
            hi = mid
        else:
            lo = mid + 1
    novel(grid[lo])
    return BandwidthChoice(grid[lo], target, dict(sorted(tried.items())), target_copies, dict(sorted(copies.items())),
                           samples=decoded[grid[lo]])


def fit_novelty_matched_prior(
    mu: np.ndarray, reference: np.ndarray, held_out: np.ndarray, held_name: str,
    decode: Callable[[np.ndarray], np.ndarray], min_pitch: int, max_centers: int | None = None,
    samples: int = 1000, seed: int = 0,
) -> tuple[LatentPrior, list[BandwidthChoice]]:
    """The latent prior for training latents `mu` of windows `reference`. A kernel density is tried with the global
    kernel and the local one (LatentPrior.with_local_kernel), each at the bandwidth of `match_held_out_novelty`
    against `held_out` (named `held_name` in its description); the one whose decoded samples' weakest feature
    overlap with those melodies (seqvae.evaluate.prior) is higher is kept. Choices, the kept one first; none
    when there is nothing to choose: a single Gaussian, or no held-out melodies."""
    prior = LatentPrior.fit(mu, max_centers=max_centers)
    if prior.centers is None or len(held_out) == 0:
        return prior, []
    tried = []
    for kernel in (prior, prior.with_local_kernel()):
        choice = match_held_out_novelty(kernel, decode, reference, held_out, samples, seed)
        choice.kernel = kernel.kernel
        choice.weakest_overlap = min(c.overlap for c in compare_features(choice.samples, held_out, min_pitch))
        tried.append((kernel, choice))
    tried.sort(key=lambda pair: -pair[1].weakest_overlap)
    (kept, choice), (_, other) = tried
    rule = (f"its samples differ from their nearest training window in {choice.reached:.0%} of steps, "
            f"{held_name} melodies in {choice.target:.0%}; the {choice.kernel} kernel, its samples' weakest feature "
            f"overlap {choice.weakest_overlap:.2f} against {other.weakest_overlap:.2f} for the {other.kernel} one")
    return kept.with_bandwidth(choice.bandwidth, rule), [choice, other]
