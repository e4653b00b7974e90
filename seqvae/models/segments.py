"""The segment level of a two-level hierarchical model, taken from a trained flat model.

A flat 2-bar model already knows how to turn two bars into a latent and back. Copying its encoder and
decoder into a two-level model's segment level leaves the upper level (segment-latent encoder and
conductor) as the only thing to learn, which is what lets a 16-bar model train on CPUs.
"""

from __future__ import annotations

from pathlib import Path

import torch

from seqvae.models.checkpoint import load_model
from seqvae.models.vae import SequenceVAE


def segment_modules(model: SequenceVAE) -> list[torch.nn.Module]:
    """The modules that make up a two-level model's segment level: segment encoder and segment decoder."""
    if not model.config.segment_z_size:
        raise ValueError(f"model config {model.config.name!r} is not two-level (segment_z_size is 0)")
    return [model.encoder.segment, model.decoder.core]


def copy_segment_level(model: SequenceVAE, source: str | Path) -> None:
    """Load the flat model `source` (shipped name or directory) into `model`'s segment level; errors name any
    mismatch of shape."""
    config = model.config
    flat = load_model(source, device="cpu")
    fc = flat.config
    wanted = {"architecture": "lstm", "steps": config.segment_steps, "z_size": config.segment_z_size,
              "encoder_sizes": config.encoder_sizes, "decoder_sizes": config.decoder_sizes,
              "min_pitch": config.min_pitch, "max_pitch": config.max_pitch}
    wrong = [f"{key} {getattr(fc, key)!r} (needs {value!r})" for key, value in wanted.items()
             if getattr(fc, key) != value]
    if wrong:
        raise ValueError(f"{source!r} cannot be the segment level of {config.name!r}: its " + ", ".join(wrong))
    encoder, decoder = segment_modules(model)
    with torch.no_grad():
        wanted_keys = encoder.state_dict().keys()  # the sigma head only where the latent stage needs it
        encoder.load_state_dict({k: v.float() for k, v in flat.model.encoder.state_dict().items() if k in wanted_keys})
        decoder.load_state_dict({k: v.float() for k, v in flat.model.decoder.core.state_dict().items()})


def freeze_segment_level(model: SequenceVAE) -> None:
    """Keep the segment level fixed: its parameters get no gradients, so the optimizer never moves them."""
    for module in segment_modules(model):
        module.requires_grad_(False)
