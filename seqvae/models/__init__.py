"""Sequence VAE models: the config registry, the networks, and their files on disk. Knows nothing of MIDI.

The public names below load on first use (PEP 562), so the light modules of this package (the registry, the
precision names) import without torch and `seqvae --help` stays instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seqvae.models.checkpoint import LoadedModel, load_model, save_model, shipped_models
    from seqvae.models.latent_prior import LatentPrior
    from seqvae.models.registry import CONFIGS, ModelConfig, config_from_dict, config_to_dict, get_config
    from seqvae.models.vae import (
        LatentOutput,
        LossTerms,
        SequenceVAE,
        VAEOutput,
        build_model,
        kl_divergence,
        latent_loss,
        vae_loss,
    )

_HOMES = {
    "LoadedModel": "checkpoint", "load_model": "checkpoint", "save_model": "checkpoint",
    "shipped_models": "checkpoint", "LatentPrior": "latent_prior", "CONFIGS": "registry", "ModelConfig": "registry",
    "config_from_dict": "registry", "config_to_dict": "registry", "get_config": "registry",
    "LatentOutput": "vae", "LossTerms": "vae", "SequenceVAE": "vae", "VAEOutput": "vae", "build_model": "vae",
    "kl_divergence": "vae", "latent_loss": "vae", "vae_loss": "vae",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"seqvae.models.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'seqvae.models' has no attribute {name!r}")


__all__ = [
    "CONFIGS", "LatentOutput", "LatentPrior", "LoadedModel", "LossTerms", "ModelConfig", "SequenceVAE", "VAEOutput",
    "build_model", "config_from_dict", "config_to_dict", "get_config", "kl_divergence", "latent_loss", "load_model",
    "save_model", "shipped_models", "vae_loss",
]
