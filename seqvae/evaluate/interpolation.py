"""Interpolation sanity: along slerp(z_a, z_b), decoded melodies should move away from A and towards B."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from seqvae.models import SequenceVAE


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation between rows of a and b [N, Z] at fractions t [K] -> [N, K, Z]."""
    a, b, t = np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(t, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.clip(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12), -1.0, 1.0)
    omega = np.arccos(cos)[:, None]
    sin = np.sin(omega)
    straight = sin[:, 0] < 1e-6  # (anti)parallel: fall back to a straight line
    safe = np.where(sin > 1e-6, sin, 1.0)
    wa = np.where(straight[:, None], 1.0 - t[None, :], np.sin((1.0 - t[None, :]) * omega) / safe)
    wb = np.where(straight[:, None], t[None, :], np.sin(t[None, :] * omega) / safe)
    return wa[..., None] * a[:, None, :] + wb[..., None] * b[:, None, :]


@dataclass
class InterpolationCheck:
    pairs: int
    points: int
    monotonic_fraction: float  # share of consecutive moves where distance to A does not shrink and to B does not grow
    monotonic_pairs: float  # share of pairs whose whole path is monotonic both ways
    distance_to_start: list[float]  # mean normalised Hamming distance to A at each point
    distance_to_end: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def interpolation_check(
    model: SequenceVAE, events: np.ndarray, pairs: int, points: int = 11, seed: int = 0,
    chords: np.ndarray | None = None,
) -> InterpolationCheck:
    """Random pairs of windows; Hamming distance (share of differing steps) of each greedy decode to A and B.
    A chord model encodes each window with its own `chords` [N, steps] and decodes a point under the nearer end's
    (A's below t = 0.5, B's from there), as a morph of two clips does."""
    events = np.asarray(events, dtype=np.int64)
    if len(events) < 2 or pairs < 1:
        raise ValueError("the interpolation check needs at least 2 windows and 1 pair")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(events), size=pairs)
    second = (first + rng.integers(1, len(events), size=pairs)) % len(events)  # never the same window
    a, b = events[first], events[second]
    t = np.linspace(0.0, 1.0, points)
    ca = cb = path_chords = None
    if chords is not None:
        heard = np.asarray(chords, dtype=np.int64)
        ca, cb = torch.as_tensor(heard[first]), torch.as_tensor(heard[second])
        path_chords = torch.where(torch.as_tensor(t >= 0.5)[None, :, None], cb[:, None], ca[:, None])
        path_chords = path_chords.reshape(pairs * points, -1)
    mu_a, _ = model.encode(torch.as_tensor(a), chords=ca)
    mu_b, _ = model.encode(torch.as_tensor(b), chords=cb)
    path = slerp(mu_a.cpu().numpy(), mu_b.cpu().numpy(), t)  # [P, K, Z]
    z = torch.as_tensor(path.reshape(pairs * points, -1), dtype=torch.float32)
    decoded = model.decode(z, chords=path_chords).cpu().numpy().reshape(pairs, points, -1)
    to_a = (decoded != a[:, None, :]).mean(axis=2)
    to_b = (decoded != b[:, None, :]).mean(axis=2)
    grows = np.diff(to_a, axis=1) >= 0
    shrinks = np.diff(to_b, axis=1) <= 0
    both = grows & shrinks
    return InterpolationCheck(
        pairs=pairs,
        points=points,
        monotonic_fraction=float((grows.mean() + shrinks.mean()) / 2),
        monotonic_pairs=float(both.all(axis=1).mean()),
        distance_to_start=[float(v) for v in to_a.mean(axis=0)],
        distance_to_end=[float(v) for v in to_b.mean(axis=0)],
    )
