"""Which arithmetic evaluation decodes in, and how far bfloat16 greedy decodes stray from float32 ones.

`seqvae serve` decodes in bfloat16 where it can, so a float32 accuracy is not always the figure a musician hears;
`seqvae eval --precision` and benchmarks/bf16_agreement.py measure the difference instead of asserting it.
The precision is resolved once, by `SequenceVAE.decoding_precision`, the same rule the engine follows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from seqvae.models import LatentPrior, SequenceVAE


def greedy_decode(model: SequenceVAE, z: torch.Tensor, precision: str,
                  chords: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy tokens [B, steps] of latents z in 'float32' or 'bfloat16' (`SequenceVAE.decoding_precision` resolves
    'auto'), under `chords` [B, steps] for a chord model."""
    return model.decode(z, precision=precision, chords=chords)


@dataclass
class PrecisionAgreement:
    melodies: int
    melody_agreement: float  # share of latents whose bfloat16 greedy decode equals the float32 one token for token
    token_agreement: float  # share of all decoded tokens that agree
    # With targets (the melodies the latents encode): the share of their tokens each arithmetic reconstructs. Near
    # ties flip either way, so agreement alone cannot say whether bfloat16 costs accuracy; these can.
    float32_accuracy: float | None = None
    bfloat16_accuracy: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def precision_agreement(model: SequenceVAE, z: np.ndarray, batch_size: int = 256,
                        targets: np.ndarray | None = None) -> PrecisionAgreement:
    """Greedy decodes of latents z [N, Z] in bfloat16 against float32, and against `targets` [N, steps] when given;
    needs `model.bf16_decoding_available()`."""
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(f"need a non-empty [N, {model.config.z_size}] array of latents, got shape {z.shape}")
    if targets is not None and np.shape(targets) != (len(z), model.config.steps):
        raise ValueError(f"targets must be [{len(z)}, {model.config.steps}] tokens, one melody per latent, "
                         f"got shape {np.shape(targets)}")
    same_rows, same_tokens, right = 0, 0, {"float32": 0, "bfloat16": 0}
    for start in range(0, len(z), batch_size):
        batch = torch.from_numpy(z[start:start + batch_size])
        decoded = {p: greedy_decode(model, batch, p) for p in ("bfloat16", "float32")}
        same = decoded["bfloat16"] == decoded["float32"]
        same_rows += int(same.all(dim=1).sum())
        same_tokens += int(same.sum())
        if targets is not None:
            wanted = torch.as_tensor(np.asarray(targets[start:start + batch_size]), dtype=torch.long)
            for p, tokens in decoded.items():
                right[p] += int((tokens == wanted).sum())
    tokens = len(z) * model.config.steps
    accuracy = {p: (n / tokens if targets is not None else None) for p, n in right.items()}
    return PrecisionAgreement(len(z), same_rows / len(z), same_tokens / tokens, accuracy["float32"],
                              accuracy["bfloat16"])


@dataclass
class LatentSet:
    label: str
    z: np.ndarray  # [N, Z] float32
    targets: np.ndarray | None  # [N, steps] tokens the latents encode, where there are such melodies


def agreement_latents(model: SequenceVAE, latent_prior: LatentPrior | None, n: int, seed: int = 0,
                      temperature: float = 0.5, batch_size: int = 256) -> list[LatentSet]:
    """Latents that stand in for a test split where none is at hand (datasets are not shipped): `n` draws from the
    checkpoint's latent prior (N(0, I) without one), as `sample` decodes them, and the posterior means of the
    melodies decoded from those draws at `temperature` in float32, as reconstructing a melody decodes them (those
    melodies are the means' targets)."""
    rng = np.random.default_rng(seed)
    if latent_prior is not None:
        drawn = latent_prior.sample(n, rng)
    else:
        drawn = rng.standard_normal((n, model.config.z_size), dtype=np.float32)
    generator = torch.Generator().manual_seed(seed)
    means, melodies = [], []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            z = torch.from_numpy(drawn[start:start + batch_size])
            decoded = model.decode(z, temperature=temperature, generator=generator)
            melodies.append(decoded.cpu().numpy())
            means.append(model.encode(decoded)[0].float().cpu().numpy())
    return [LatentSet("prior latents", drawn, None),
            LatentSet("posterior means", np.concatenate(means), np.concatenate(melodies))]
