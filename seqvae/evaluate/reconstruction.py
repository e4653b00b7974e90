"""Reconstruction and posterior health: the numbers both periodic validation and `seqvae eval` report.

Accuracy is per step (MusicVAE Table 1): the share of event steps reproduced, teacher-forced (each step
predicted from the true prefix) and free-running greedy (decode(mu) on its own). Active units count
latent dimensions whose posterior mean varies across melodies (variance > 0.01, Burda et al. 2016);
a collapsed dimension carries no information about the input. Greedy decoding runs in float32 unless told
otherwise (see `seqvae.evaluate.precision`); teacher forcing always does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from seqvae.evaluate.precision import greedy_decode
from seqvae.models import SequenceVAE, kl_divergence
from seqvae.models.precision import parse_precision

ACTIVE_UNIT_THRESHOLD = 0.01


@dataclass
class ReconstructionMetrics:
    windows: int
    teacher_forced_accuracy: float
    greedy_accuracy: float | None  # None when not measured
    greedy_windows: int
    recon_nats: float  # teacher-forced cross-entropy per window, z = mu
    kl: float  # mean KL per window over the whole z (nats)
    kl_per_dim: list[float]
    active_units: int
    active_fraction: float
    teacher_forced_by_step: list[float]
    greedy_by_step: list[float] | None

    def to_dict(self) -> dict:
        return asdict(self)


def reconstruction_metrics(
    model: SequenceVAE,
    events: np.ndarray,
    batch_size: int = 256,
    greedy_limit: int | None = None,
    progress: bool = False,
    precision: str = "float32",
    chords: np.ndarray | None = None,
) -> ReconstructionMetrics:
    """Measure a model on event windows [N, T]; greedy decoding runs on the first `greedy_limit` windows
    (all when None, none when 0), in `precision` ("auto", "float32" or "bfloat16": see
    `SequenceVAE.decoding_precision`). A chord model reads each window's `chords` [N, T]."""
    from tqdm import tqdm

    events = np.asarray(events)
    if events.ndim != 2 or len(events) == 0:
        raise ValueError(f"need a non-empty [N, {model.config.steps}] array of windows, got shape {events.shape}")
    greedy_limit = len(events) if greedy_limit is None else min(greedy_limit, len(events))
    precision = model.decoding_precision(parse_precision(precision))
    was_training = model.training
    model.eval()
    device = model.device
    tf_correct = np.zeros(events.shape[1])
    greedy_correct = np.zeros(events.shape[1])
    recon_sum, kl_sum = 0.0, 0.0
    kl_dims = torch.zeros(model.config.z_size, dtype=torch.float64)
    mus = []
    starts = range(0, len(events), batch_size)
    with torch.no_grad():
        for start in tqdm(starts, desc="reconstruct", disable=not progress, leave=False):
            x = torch.as_tensor(np.asarray(events[start:start + batch_size], dtype=np.int64), device=device)
            c = None if chords is None else torch.as_tensor(np.asarray(chords[start:start + batch_size],
                                                                       dtype=np.int64), device=device)
            mu, sigma = model.encode(x, chords=c)
            logits = model.logits(x, mu, chords=c).float()
            ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x, reduction="none")
            recon_sum += float(ce.sum())
            tf_correct += (logits.argmax(-1) == x).double().sum(0).cpu().numpy()
            kl = kl_divergence(mu.double(), sigma.double())
            kl_sum += float(kl.sum())
            kl_dims += kl.sum(0).cpu()
            mus.append(mu.double().cpu())
            n_greedy = max(0, min(len(x), greedy_limit - start))
            if n_greedy:
                decoded = greedy_decode(model, mu[:n_greedy], precision, None if c is None else c[:n_greedy])
                greedy_correct += (decoded == x[:n_greedy]).double().sum(0).cpu().numpy()
    model.train(was_training)
    n = len(events)
    mu_all = torch.cat(mus)
    variance = mu_all.var(dim=0, unbiased=False) if n > 1 else torch.zeros(model.config.z_size, dtype=torch.float64)
    active = int((variance > ACTIVE_UNIT_THRESHOLD).sum())
    tf_by_step = tf_correct / n
    greedy_by_step = greedy_correct / greedy_limit if greedy_limit else None
    return ReconstructionMetrics(
        windows=n,
        teacher_forced_accuracy=float(tf_by_step.mean()),
        greedy_accuracy=float(greedy_by_step.mean()) if greedy_by_step is not None else None,
        greedy_windows=greedy_limit,
        recon_nats=recon_sum / n,
        kl=kl_sum / n,
        kl_per_dim=[float(v) for v in (kl_dims / n)],
        active_units=active,
        active_fraction=active / model.config.z_size,
        teacher_forced_by_step=[float(v) for v in tf_by_step],
        greedy_by_step=[float(v) for v in greedy_by_step] if greedy_by_step is not None else None,
    )
