"""One spelling of the arithmetic a model trains or decodes in, shared by the trainer, the engine and the CLI.

"auto" lets the caller pick (bfloat16 autocast for training on a GPU; bfloat16 decoding where the weights are
bfloat16 values and the CPU has the dot products). The short forms fp32 and bf16, which `seqvae train` has always
taken, are read as float32 and bfloat16.
"""

from __future__ import annotations

PRECISIONS = ("auto", "float32", "bfloat16")
SHORT_FORMS = {"fp32": "float32", "bf16": "bfloat16"}
ACCEPTED = PRECISIONS + tuple(SHORT_FORMS)  # what a command line may send


def parse_precision(value: str) -> str:
    """'auto', 'float32' or 'bfloat16' for any accepted spelling; a clear error for anything else."""
    name = SHORT_FORMS.get(value, value) if isinstance(value, str) else value
    if name not in PRECISIONS:
        raise ValueError(f"precision {value!r} is unknown: send one of {', '.join(PRECISIONS)} (or fp32 / bf16)")
    return name
