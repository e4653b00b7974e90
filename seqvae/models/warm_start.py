"""Start a new model from a trained one of the same shapes (fine-tuning, e.g. the triple-meter twin from `default`).

A recurrent model's weights do not depend on the window length, so a 2-bar duple model is a full start for a
2-bar triple one: pitch, interval and key habits carry over, and training only has to learn the new bar.
A chord model starts from the same model without chords in the same way, its chord input weights at zero.
"""

from __future__ import annotations

from pathlib import Path

import torch

from seqvae.models.checkpoint import load_model
from seqvae.models.vae import SequenceVAE


def copy_weights(model: SequenceVAE, source: str | Path) -> int:
    """Load every weight of the trained model `source` (shipped name or directory) into `model`; errors name each
    missing, extra or differently shaped weight. Returns where `source`'s schedules stopped: the step it records it
    was trained to plus the schedule offset it started from when it was a fine-tune itself (0 when it records
    none), where a fine-tune's schedules go on from.

    A chord model starts from the same model without chords: its first encoder and decoder layers have the
    source's input weights plus zero columns for the chord one-hot (the last inputs), so at step 0 it computes
    exactly what `source` does whatever the chords, and training moves those columns from zero."""
    loaded = load_model(source, device="cpu")
    if loaded.config.architecture != model.config.architecture:
        raise ValueError(f"{source!r} cannot start {model.config.name!r}: it is a {loaded.config.architecture!r} "
                         f"model and {model.config.name!r} is {model.config.architecture!r}")
    extra = model.config.chord_classes - loaded.config.chord_classes
    if extra < 0:
        raise ValueError(f"{source!r} reads chords and {model.config.name!r} does not: start it from a model "
                         "without chords")
    theirs = {key: value.float() for key, value in loaded.model.state_dict().items()}
    ours = model.state_dict()
    for key in _chord_input_weights(model):
        if key in theirs and theirs[key].shape[1] + extra == ours[key].shape[1]:
            theirs[key] = torch.cat([theirs[key], theirs[key].new_zeros(theirs[key].shape[0], extra)], dim=1)
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
        model.load_state_dict(theirs)
    return int(loaded.extra.get("step", 0)) + int(loaded.extra.get("schedule_offset", 0))


def _chord_input_weights(model: SequenceVAE) -> list[str]:
    """The weights that read the chord one-hot: the input weights of the first encoder and decoder layers."""
    if not model.config.chord_classes:
        return []
    return ["encoder.layers.0.weight_ih_l0", "encoder.layers.0.weight_ih_l0_reverse",
            "decoder.core.layers.0.weight_ih_l0"]
