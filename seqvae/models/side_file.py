"""A checkpoint's side files (latent prior, attribute vectors, chord bank): numpy tensors and string metadata in
one safetensors file, written atomically, and read with one error for any damage that names the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save

from seqvae.codec.atomic_files import atomic_write_bytes

T = TypeVar("T")


def write_side_file(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    atomic_write_bytes(path, save(tensors, metadata=metadata))
    return path


def read_side_file(path: Path, build: Callable[[dict[str, np.ndarray], dict[str, str]], T]) -> T:
    """`build(tensors, metadata)` of the file at `path`; anything wrong with the file or what it holds (missing
    keys, bad metadata, a constructor's refusal) is one ValueError: recompute it with `seqvae attributes`."""
    try:
        with safe_open(str(path), "np") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        return build(tensors, metadata)
    except Exception as exc:  # noqa: BLE001 - any damage is reported the same way
        raise ValueError(f"{path} is damaged ({exc}); recompute it with `seqvae attributes`") from None
