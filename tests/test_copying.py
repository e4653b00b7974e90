"""Distance to the nearest training window, and the bandwidth that makes samples as novel as unseen melodies."""

from __future__ import annotations

import numpy as np
import pytest

from seqvae.evaluate import copying
from seqvae.evaluate.copying import (
    copies_within,
    copying_report,
    fit_novelty_matched_prior,
    match_held_out_novelty,
    match_novelty,
    nearest_distance,
)
from seqvae.models import LatentPrior
from seqvae.models.latent_prior import BANDWIDTHS


def test_nearest_distance_matches_brute_force(monkeypatch):
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 5, (300, 16))
    events = np.concatenate([reference[:3], rng.integers(0, 5, (40, 16))])
    monkeypatch.setattr(copying, "CHUNK_BYTES", 16 * 300 * 2 * 7)  # several blocks, the last one partial
    got = nearest_distance(events, reference)
    want = np.array([min(np.mean(e != r) for r in reference) for e in events])
    np.testing.assert_allclose(got, want)
    assert got[:3].tolist() == [0.0, 0.0, 0.0]
    report = copying_report(events, reference)
    assert report.windows == 43 and report.exact_copies == pytest.approx(3 / 43)
    assert report.mean_distance == pytest.approx(want.mean())


def test_nearest_distance_errors():
    with pytest.raises(ValueError, match=r"\[N, T\] windows"):
        nearest_distance(np.zeros((2, 8), int), np.zeros((2, 16), int))
    with pytest.raises(ValueError, match="at least one reference"):
        nearest_distance(np.zeros((2, 8), int), np.zeros((0, 8), int))


def _clusters(seed: int, n: int, centres: np.ndarray, spread: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return centres[rng.integers(0, len(centres), n)] + spread * rng.standard_normal((n, centres.shape[1]))


def _decode(z: np.ndarray) -> np.ndarray:
    """A stand-in decoder: each latent coordinate becomes two steps of a small event alphabet."""
    return np.repeat(np.clip(np.round(z), -6, 6).astype(np.int64) + 6, 2, axis=1)


def test_bandwidth_is_the_narrowest_as_novel_as_held_out_melodies():
    centres = np.random.default_rng(0).standard_normal((6, 8)) * 4.0
    latents = _clusters(1, 4000, centres, 0.5)
    prior = LatentPrior.fit(latents)
    assert prior.centers is not None
    reference = _decode(prior.centers.astype(np.float64))
    held_out = _decode(_clusters(2, 500, centres, 1.5))  # further from the training latents than they are apart
    choice = match_held_out_novelty(prior, _decode, reference, held_out, samples=500)
    grid = sorted(float(h) for h in BANDWIDTHS)
    assert choice.target == pytest.approx(nearest_distance(held_out, reference).mean())
    assert choice.bandwidth in grid and choice.reached == choice.tried[choice.bandwidth] >= choice.target
    assert grid[0] < choice.bandwidth < grid[-1]
    below = grid[grid.index(choice.bandwidth) - 1]
    draws = prior.with_bandwidth(below).sample(500, np.random.default_rng(0))
    assert nearest_distance(_decode(draws), reference).mean() < choice.target  # one step narrower copies too much
    assert len(choice.tried) < len(grid) // 2  # bisection, not a scan


def test_bandwidth_choice_needs_a_kernel_density():
    gaussian = LatentPrior.fit(np.random.default_rng(0).standard_normal((500, 4)))
    assert gaussian.centers is None
    with pytest.raises(ValueError, match="single Gaussian"):
        match_held_out_novelty(gaussian, _decode, np.zeros((3, 8), int), np.zeros((3, 8), int))


def test_a_mean_distance_that_hides_copies_is_not_novel():
    """Draws half of which are note-for-note training windows and half far off have the held-out mean distance,
    but they copy: the choice goes on to the narrowest bandwidth that copies no more than `copies_within` lets."""
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 90, (200, 32))
    held_out = reference[:100].copy()
    held_out[:, :10] = 95  # 10 of 32 steps differ from the nearest window, none is a copy
    far = np.full((100, 32), 99)

    def draw(h: float) -> np.ndarray:
        if h < 0.5:
            return np.concatenate([reference[:50], far[:50]])  # mean distance 0.5, half of them copies
        moved = reference[:100].copy()
        moved[:, :12] = 97
        return moved  # mean distance 0.375, no copies

    choice = match_novelty(draw, lambda z: z, reference, held_out)
    assert choice.target == pytest.approx(10 / 32) and choice.target_copies == 0.0
    narrower = [h for h in choice.tried if h < choice.bandwidth]
    assert narrower and all(choice.tried[h] >= choice.target and choice.copies[h] == 0.5 for h in narrower)
    assert choice.bandwidth == 0.5 and choice.copies[0.5] == 0.0
    assert copies_within(0.03, 0.01) and not copies_within(0.04, 0.01)


def test_the_prior_keeps_the_kernel_whose_samples_sound_more_like_unseen_melodies():
    centres = np.random.default_rng(0).standard_normal((6, 8)) * 4.0
    latents = _clusters(1, 4000, centres, 0.5)
    reference = _decode(latents)
    held_out = _decode(_clusters(2, 500, centres, 1.5))
    prior, choices = fit_novelty_matched_prior(latents, reference, held_out, "valid", _decode, min_pitch=21,
                                               samples=500)
    kept, other = choices
    assert {kept.kernel, other.kernel} == {"global", "local"} and prior.kernel == kept.kernel
    assert kept.weakest_overlap >= other.weakest_overlap and prior.bandwidth == kept.bandwidth
    assert f"the {kept.kernel} kernel" in prior.describe()
    _, none = fit_novelty_matched_prior(latents, reference, held_out[:0], "valid", _decode, min_pitch=21)
    assert none == []
