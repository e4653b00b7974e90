"""Sequence VAE models: the config registry, the networks, and their files on disk. Knows nothing of MIDI."""

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

__all__ = [
    "CONFIGS", "LatentOutput", "LatentPrior", "LoadedModel", "LossTerms", "ModelConfig", "SequenceVAE", "VAEOutput",
    "build_model", "config_from_dict", "config_to_dict", "get_config", "kl_divergence", "latent_loss", "load_model",
    "save_model", "shipped_models", "vae_loss",
]
