"""A short fine-tune of a trained model on a user's few windows, for `seqvae personalize --steps N`.

It is an ordinary run of the trainer: the user's windows become a one-split built corpus, the config is the base
model's own, every weight starts from the base (init_from, so the KL and sampling schedules go on from where its
training stopped) and the learning rate is a small constant, so a few hundred steps bend the decoder towards the
user's style without forgetting what it knew.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from seqvae.codec.events import EventCodec
from seqvae.codec.meter import Meter, family_for_window
from seqvae.data.corpus import FORMAT_VERSION, SPLITS, save_index, save_split
from seqvae.models.registry import ModelConfig
from seqvae.train.trainer import MODEL_DIR, TrainOptions, train

FINE_TUNE_LEARNING_RATE = 1e-4  # a tenth of the recipes' starting rate, held constant
MAX_FINE_TUNE_STEPS = 100_000


def write_user_corpus(directory: Path, events: np.ndarray, meter: Meter, codec: EventCodec) -> Path:
    """A built corpus whose train split is `events` [N, steps] (valid and test empty), the layout the trainer reads."""
    directory.mkdir(parents=True, exist_ok=True)
    steps = int(events.shape[1])
    empty = np.zeros((0, steps), np.int8)
    for split in SPLITS:
        rows = events if split == "train" else empty
        meters = np.tile(np.array([meter.numerator, meter.denominator], np.int8), (len(rows), 1))
        save_split(directory, split, rows, meters, np.zeros(len(rows), np.int32))
    meta = {"format": FORMAT_VERSION, "steps": steps, "family": family_for_window(steps),
            "codec": {"min_pitch": codec.min_pitch, "max_pitch": codec.max_pitch},
            "settings": {"source": "personalize"}, "splits": {"train": {"windows": len(events)}}}
    save_index(directory, meta, ["user"])
    return directory


def fine_tune(base_dir: Path, config: ModelConfig, events: np.ndarray, meter: Meter, codec: EventCodec,
              work_dir: Path, steps: int, learning_rate: float = FINE_TUNE_LEARNING_RATE, seed: int = 0,
              device: str | None = None, command: str = "seqvae personalize") -> Path:
    """Fine-tune the model in `base_dir` (whose config is `config`) for `steps` steps on `events`, in `work_dir`;
    returns the directory of the tuned model (work_dir/run/model). Shows a progress bar."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_FINE_TUNE_STEPS:
        raise ValueError(f"--steps {steps!r}: send a whole number of fine-tune steps from 1 to {MAX_FINE_TUNE_STEPS}"
                         " (0 fits only the prior and the attribute vectors)")
    if not (np.isfinite(learning_rate) and 0 < learning_rate <= 1e-2):
        raise ValueError(f"learning rate {learning_rate!r}: send a small positive number such as "
                         f"{FINE_TUNE_LEARNING_RATE:g}")
    corpus = write_user_corpus(work_dir / "corpus", np.asarray(events, np.int8), meter, codec)
    tuned = dataclasses.replace(config, init_from=str(base_dir), init_segments="", freeze_segments=False,
                                latent_train_steps=0, learning_rate=learning_rate, min_learning_rate=learning_rate)
    options = TrainOptions(data=corpus, out=work_dir / "run", config=tuned, train_steps=steps, seed=seed,
                           device=device, log_every=max(1, steps // 10), eval_every=steps, checkpoint_every=steps,
                           command=command)
    train(options)
    return work_dir / "run" / MODEL_DIR
