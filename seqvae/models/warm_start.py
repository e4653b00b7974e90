"""Start a new model from a trained one of the same shapes (fine-tuning, e.g. the triple-meter twin from `default`).

A recurrent model's weights do not depend on the window length, so a 2-bar duple model is a full start for a
2-bar triple one: pitch, interval and key habits carry over, and training only has to learn the new bar.
"""

from __future__ import annotations

from pathlib import Path

import torch

from seqvae.models.checkpoint import load_model
from seqvae.models.vae import SequenceVAE


def copy_weights(model: SequenceVAE, source: str | Path) -> int:
    """Load every weight of the trained model `source` (shipped name or directory) into `model`; errors name each
    missing, extra or differently shaped weight. Returns the step `source` records it was trained to (0 when it
    records none), where a fine-tune's schedules go on from."""
    loaded = load_model(source, device="cpu")
    if loaded.config.architecture != model.config.architecture:
        raise ValueError(f"{source!r} cannot start {model.config.name!r}: it is a {loaded.config.architecture!r} "
                         f"model and {model.config.name!r} is {model.config.architecture!r}")
    theirs = loaded.model.state_dict()
    ours = model.state_dict()
    wrong = (
        [f"{key} {tuple(theirs[key].shape)} (needs {tuple(value.shape)})" for key, value in ours.items()
         if key in theirs and theirs[key].shape != value.shape]
        + [f"{key} (missing in {source!r})" for key in ours if key not in theirs]
        + [f"{key} (not in {model.config.name!r})" for key in theirs if key not in ours]
    )
    if wrong:
        shown = ", ".join(wrong[:6]) + (f" and {len(wrong) - 6} more" if len(wrong) > 6 else "")
        raise ValueError(f"{source!r} cannot start {model.config.name!r}: its weights differ: {shown}")
    with torch.no_grad():
        model.load_state_dict({key: value.float() for key, value in theirs.items()})
    return int(loaded.extra.get("step", 0))
