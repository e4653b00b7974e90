"""seqvae: a latent-space melody instrument."""

__version__ = "0.1.0"
