"""Attribute vectors (MusicVAE paper, section 5.3): fitting them, and measuring that they do what they claim.

For each attribute, the vector is the mean posterior mean of the training melodies in the top quartile of that
attribute minus the mean of the bottom quartile. `measure_monotonicity` checks the claim that matters: moving
along a vector moves its attribute, steadily, in the decoded melodies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from seqvae.evaluate import features
from seqvae.models.attribute_vectors import AttributeInfo, AttributeVectors

DEFAULT_AMOUNTS = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5)

# Attribute name (as a musician types it) -> the function in seqvae.evaluate.features.
ATTRIBUTE_NAMES = {
    "density": "note_density",
    "interval": "mean_interval",
    "syncopation_16th": "syncopation_16th",
    "syncopation_8th": "syncopation_8th",
    "range": "pitch_range",
    "in_key": "in_key_ratio",
}


class EventModel(Protocol):
    """What measuring needs of a model: event windows to latents and back (the engine is one)."""

    def encode_events(self, events: np.ndarray, chords: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def decode_events(self, z: np.ndarray, chords: np.ndarray | None = None) -> np.ndarray: ...


def attribute_functions() -> dict[str, Callable[..., np.ndarray]]:
    """Attribute name -> function of an event array [N, T] giving one float per melody."""
    return {name: getattr(features, function) for name, function in ATTRIBUTE_NAMES.items()}


def attribute_values(events: np.ndarray, name: str, min_pitch: int = 21) -> np.ndarray:
    """One attribute for each melody of [N, T] events, as float64 [N] (`min_pitch`: the codec's, for keys)."""
    functions = attribute_functions()
    if name not in functions:
        raise ValueError(f"unknown attribute {name!r}: use one of {', '.join(functions)}")
    batch = np.atleast_2d(np.asarray(events, dtype=np.int64))
    values = functions[name](batch, min_pitch=min_pitch) if name == "in_key" else functions[name](batch)
    return np.asarray(values, dtype=np.float64).reshape(-1)


def quartile_groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the bottom and top quartiles by rank, NaN values left out."""
    valid = np.flatnonzero(np.isfinite(values))
    order = valid[np.argsort(values[valid], kind="stable")]
    k = len(order) // 4
    return order[:k], order[len(order) - k:]


def compute_attribute_vectors(mu: np.ndarray, events: np.ndarray, names: Sequence[str] | None = None,
                              meta: dict | None = None, min_pitch: int = 21) -> AttributeVectors:
    """Top-quartile minus bottom-quartile mean latent, per attribute, from posterior means [N, Z]."""
    names = list(names or ATTRIBUTE_NAMES)
    if len(mu) != len(events) or len(mu) < 8:
        raise ValueError(f"need at least 8 melodies with latents to compute attribute vectors, got {len(mu)}")
    kept_names, vectors, infos = [], [], []
    for name in names:
        values = attribute_values(events, name, min_pitch)
        low, high = quartile_groups(values)
        if len(low) == 0 or values[high].mean() <= values[low].mean():
            continue  # constant over this data: no direction to find
        vector = mu[high].mean(axis=0) - mu[low].mean(axis=0)
        kept_names.append(name)
        vectors.append(vector.astype(np.float32))
        infos.append(AttributeInfo(
            name, float(values[low].max()), float(values[high].min()), float(values[low].mean()),
            float(values[high].mean()), len(low), len(high), float(np.linalg.norm(vector)),
        ))
    if not vectors:
        raise ValueError("every attribute is constant over these melodies; use a larger or more varied split")
    return AttributeVectors(kept_names, np.stack(vectors), infos, dict(meta or {}))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    def ranks(a: np.ndarray) -> np.ndarray:
        order = np.argsort(a, kind="stable")
        r = np.empty(len(a))
        r[order] = np.arange(len(a), dtype=np.float64)
        for value in np.unique(a):  # average the ranks of ties
            tied = a == value
            r[tied] = r[tied].mean()
        return r

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rx, ry = ranks(x), ranks(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return float("nan")
    return float(((rx - rx.mean()) * (ry - ry.mean())).mean() / (sx * sy))


@dataclass
class Monotonicity:
    """Attribute of decoded melodies along amount * vector: the means, their Spearman, steps up."""

    name: str
    amounts: list[float]
    means: list[float]  # mean attribute at each amount, over the melodies
    spearman: float  # Spearman(amounts, means)
    increasing_fraction: float  # fraction of consecutive amounts where the mean goes up
    per_melody_spearman: float  # mean over melodies of Spearman(amounts, attribute)


def measure_monotonicity(model: EventModel, vectors: AttributeVectors, events: np.ndarray, min_pitch: int = 21,
                         names: Sequence[str] | None = None,
                         amounts: Sequence[float] = DEFAULT_AMOUNTS,
                         chords: np.ndarray | None = None) -> list[Monotonicity]:
    """Shift each melody by each amount along each vector, decode greedily, and measure the attribute. A chord
    model hears each melody's own `chords` [N, steps] in the encoding and in every shifted decoding."""
    amounts_arr = np.asarray(amounts, dtype=np.float32)
    mu, _ = model.encode_events(np.asarray(events, dtype=np.int64), chords=chords)
    shifted_chords = None if chords is None else np.repeat(np.asarray(chords), len(amounts_arr), axis=0)
    results = []
    for name in names or vectors.names:
        vector = vectors.vector(name)
        z = (mu[:, None, :] + amounts_arr[None, :, None] * vector[None, None, :]).reshape(-1, mu.shape[1])
        tokens = model.decode_events(z, chords=shifted_chords)
        values = attribute_values(tokens, name, min_pitch).reshape(len(mu), len(amounts_arr))
        means = np.nanmean(np.where(np.isfinite(values), values, np.nan), axis=0)
        per_melody = [spearman(amounts_arr, row) for row in values if np.all(np.isfinite(row))]
        per_melody = [s for s in per_melody if np.isfinite(s)]
        results.append(Monotonicity(
            name, [float(a) for a in amounts_arr], [float(m) for m in means], spearman(amounts_arr, means),
            float(np.mean(np.diff(means) > 0)), float(np.mean(per_melody)) if per_melody else float("nan"),
        ))
    return results
