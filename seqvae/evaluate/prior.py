"""Do prior samples look like the corpus? Per feature, the overlap of the two histograms (1 = identical)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from seqvae.evaluate.features import EVAL_FEATURES, in_key_ratio
from seqvae.models import SequenceVAE
from seqvae.models.chord_bank import ChordBank
from seqvae.models.latent_prior import LatentPrior

# Shared bin edges per feature (the last bin also takes everything above it).
FEATURE_BINS: dict[str, np.ndarray] = {
    "note_density": np.linspace(0.0, 1.0, 33),
    "pitch_range": np.arange(0.0, 37.0, 1.0),
    "mean_interval": np.arange(0.0, 12.5, 0.5),
    "in_key_ratio": np.linspace(0.0, 1.0, 21),
    "rest_ratio": np.linspace(0.0, 1.0, 21),
}


@dataclass
class FeatureComparison:
    feature: str
    overlap: float  # overlap coefficient of the normalised histograms: sum of bin-wise minima
    sample_mean: float
    data_mean: float
    sample_std: float
    data_std: float

    def to_dict(self) -> dict:
        return asdict(self)


def histogram_overlap(a: np.ndarray, b: np.ndarray, edges: np.ndarray) -> float:
    """Sum over bins of min(p_a, p_b) with values clipped into the edge range; 1 means same distribution."""
    if len(a) == 0 or len(b) == 0:
        raise ValueError("histogram overlap needs values on both sides")
    lo, hi = edges[0], edges[-1]
    ha, _ = np.histogram(np.clip(a, lo, hi), bins=edges)
    hb, _ = np.histogram(np.clip(b, lo, hi), bins=edges)
    return float(np.minimum(ha / ha.sum(), hb / hb.sum()).sum())


def feature_values(events: np.ndarray, min_pitch: int) -> dict[str, np.ndarray]:
    out = {}
    for name, fn in EVAL_FEATURES.items():
        out[name] = np.asarray(in_key_ratio(events, min_pitch) if fn is in_key_ratio else fn(events))
    return out


def sample_prior(
    model: SequenceVAE, n: int, temperature: float, seed: int, batch_size: int = 256,
    latent_prior: LatentPrior | None = None, chords: np.ndarray | None = None, chord_bank: ChordBank | None = None,
) -> np.ndarray:
    """`n` melodies decoded from the checkpoint's fitted latent prior, or z ~ N(0, I) without one; seeded. A chord
    model decodes sample i under `chords[i]` ([n, steps] chord classes), its latent drawn from p(z | chords[i])
    through its `chord_bank` when it has one and a fitted prior (as `sample` under chords draws)."""
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    under_bank = chord_bank is not None and latent_prior is not None and chords is not None

    def encode(melodies: np.ndarray, heard: np.ndarray) -> np.ndarray:
        return model.encode(torch.as_tensor(melodies), chords=torch.as_tensor(heard))[0].cpu().numpy()

    out = []
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        c = None if chords is None else np.asarray(chords[start:start + count], dtype=np.int64)
        if under_bank:
            z = torch.from_numpy(chord_bank.draw_latents(c, rng, encode, latent_prior, model.config.num_classes))
        elif latent_prior is not None:
            z = torch.from_numpy(latent_prior.sample(count, rng))
        else:
            z = torch.randn(count, model.config.z_size, generator=generator)
        heard = None if c is None else torch.as_tensor(c)
        out.append(model.decode(z, temperature=temperature, generator=generator, chords=heard).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.steps), np.int64)


def compare_features(samples: np.ndarray, data: np.ndarray, min_pitch: int) -> list[FeatureComparison]:
    fs, fd = feature_values(samples, min_pitch), feature_values(data, min_pitch)
    return [
        FeatureComparison(name, histogram_overlap(fs[name], fd[name], FEATURE_BINS[name]), float(fs[name].mean()),
                          float(fd[name].mean()), float(fs[name].std()), float(fd[name].std()))
        for name in EVAL_FEATURES
    ]
