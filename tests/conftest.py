"""Fixtures shared by several test modules (pytest finds them here; helpers they use are in server_support.py)."""

from __future__ import annotations

import pytest
from server_support import make_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_engine(tmp_path_factory):
    """A real Engine on a tiny untrained checkpoint, shared by the server tests."""
    import torch

    from seqvae.engine import Engine

    torch.set_num_threads(1)
    return Engine.load(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt")), device="cpu")
