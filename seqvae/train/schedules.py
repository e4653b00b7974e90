"""Step -> learning rate, KL weight, scheduled-sampling probability (MusicVAE's formulas).

All three depend only on the global step, so a resumed run follows exactly the same curves. A fine-tune passes
`offset`, the step its init_from model was trained to, so the curves go on from where that training stopped.
"""

from __future__ import annotations

import math

from seqvae.models.registry import ModelConfig


def learning_rate(config: ModelConfig, step: int, offset: int = 0) -> float:
    """Exponential decay towards a floor: (lr0 - min) * decay^step + min."""
    step += offset
    return (config.learning_rate - config.min_learning_rate) * config.decay_rate**step + config.min_learning_rate


def kl_weight(config: ModelConfig, step: int, offset: int = 0) -> float:
    """Beta annealing: max_beta * (1 - beta_rate^step), rising from 0 to max_beta."""
    step += offset
    return config.max_beta * (1.0 - config.beta_rate**step)


def sampling_probability(config: ModelConfig, step: int, offset: int = 0) -> float:
    """Inverse sigmoid schedule for feeding the model its own samples: 1 - k / (k + exp(step / k)); 0 when k = 0."""
    step += offset
    k = config.sampling_rate
    if k <= 0:
        return 0.0
    exponent = step / k
    if exponent > 700:  # exp overflows; the probability is 1 to double precision long before this
        return 1.0
    return 1.0 - k / (k + math.exp(exponent))
