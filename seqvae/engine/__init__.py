"""The inference engine: one facade over a trained model for the CLI and the OSC server."""

from seqvae.engine import clips
from seqvae.engine.engine import Engine
from seqvae.engine.inputs import (
    MidiWindow,
    clip_from_midi,
    clip_from_notes,
    melody_from_midi,
    melody_from_notes,
    windows_from_midi,
)
from seqvae.engine.latent import grid_latents, interpolate_latents, lerp, project_2d, slerp
from seqvae.models.attribute_vectors import ATTRIBUTE_FILE, AttributeVectors
from seqvae.models.device import pick_device

__all__ = [
    "ATTRIBUTE_FILE", "AttributeVectors", "Engine", "MidiWindow", "clip_from_midi", "clip_from_notes", "clips",
    "grid_latents", "interpolate_latents", "lerp",
    "melody_from_midi", "melody_from_notes", "pick_device", "project_2d", "slerp", "windows_from_midi",
]
