"""Evaluation: reconstruction accuracy, posterior health, prior-sample realism, interpolation sanity.

Melody features (numpy, on event arrays) live in `seqvae.evaluate.features` and need no torch.
"""

from seqvae.evaluate.report import EvalOptions, EvalReport, evaluate_checkpoint, format_report

__all__ = ["EvalOptions", "EvalReport", "evaluate_checkpoint", "format_report"]
