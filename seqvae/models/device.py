"""Which torch device a command runs its model on: one rule and one set of errors for the CLI, the engine,
evaluation and training.

Nothing asked for means CUDA when a GPU is visible, else the CPU; asking for CUDA without one is an error that
says what to send instead, never torch's "not compiled with CUDA".
"""

from __future__ import annotations

import torch

NO_GPU = "no CUDA GPU found: use --device cpu"


def pick_device(device: str | torch.device | None) -> torch.device:
    """CUDA when available and nothing else was asked for; a clear error for an unusable device."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device: send 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but {NO_GPU}")
    if dev.index is not None and dev.type == "cuda" and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                         f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return dev
