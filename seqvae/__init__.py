"""seqvae: a latent-space melody instrument."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from seqvae.engine import Engine


def __getattr__(name: str) -> Any:
    """`from seqvae import Engine` without importing torch for `seqvae --help` (PEP 562)."""
    if name == "Engine":
        from seqvae.engine import Engine

        return Engine
    raise AttributeError(f"module 'seqvae' has no attribute {name!r}")


__all__ = ["Engine", "__version__"]
