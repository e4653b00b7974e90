"""Training: the loop, its checkpoints, schedules and data parallelism (torchrun, gloo on CPU)."""

from seqvae.train.metrics import read_metrics
from seqvae.train.schedules import kl_weight, learning_rate, sampling_probability
from seqvae.train.state import TRAIN_STATE_FILE, TrainState, load_train_state, save_train_state
from seqvae.train.trainer import MODEL_DIR, TrainOptions, TrainResult, describe, train

__all__ = [
    "MODEL_DIR", "TRAIN_STATE_FILE", "TrainOptions", "TrainResult", "TrainState", "describe", "kl_weight",
    "learning_rate", "load_train_state", "read_metrics", "sampling_probability", "save_train_state", "train",
]
