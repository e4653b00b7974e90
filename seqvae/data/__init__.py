"""Corpora -> windows -> built arrays -> batches. Augmentation lives here, not in models."""
