"""Every model shipped in seqvae/checkpoints: complete, small enough, loadable offline, and its recorded
evaluation meets the targets it was shipped for."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seqvae.codec import NOTE_OFF
from seqvae.engine import Engine
from seqvae.models.checkpoint import CHECKPOINTS_DIR, load_model, shipped_models
from seqvae.models.registry import get_config

SHIPPED = shipped_models()
# Every shipped model meets its reconstruction and no-collapse targets. The 2-bar models meet the prior-overlap
# targets too; the 16-bar models' samples fall short of 0.8 on some features (16bar three, 16bar_triple two), which
# their README sections and eval.json files state.
OVERLAPS_REQUIRED = {"default", "triple"}
# Fields a shipped run may differ from its registry entry in: a run stopped early records its planned length,
# and its train_command.txt says where it stopped.
UNTRAINED_FIELDS = {"train_steps", "notes"}
FILES = ("config.json", "model.safetensors", "eval.json", "train_command.txt", "attributes.safetensors",
         "latent_prior.safetensors")


def test_the_default_model_is_shipped():
    assert "default" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model(name):
    directory = CHECKPOINTS_DIR / name
    for file in FILES:
        assert (directory / file).is_file(), f"{name} lacks {file}"
    assert sum(f.stat().st_size for f in directory.iterdir()) < 25 * 2**20
    report = json.loads((directory / "eval.json").read_text())
    targets = {t["measure"]: t for t in report["targets"]}
    assert "greedy accuracy" in targets and "active latent fraction" in targets
    required = [m for m in targets if name in OVERLAPS_REQUIRED or not m.startswith("prior overlap")]
    assert [m for m in required if not targets[m]["met"]] == []
    copies = report["copying"]
    assert copies["samples"]["exact_copies"] <= 2 * copies["data"]["exact_copies"] + 0.01  # samples are not copies
    assert '": "/' not in (directory / "eval.json").read_text()  # no absolute machine paths in shipped files
    engine = Engine.load(name, device="cpu")
    trained = engine.config
    registered = get_config(trained.name)  # train_command.txt names it: it must still give this training
    changed = {f for f in vars(trained) if f not in UNTRAINED_FIELDS and getattr(trained, f) != getattr(registered, f)}
    assert changed == set(), f"{name} was trained with other {sorted(changed)} than the registry's {trained.name}"
    assert engine.steps == report["steps"]
    melodies = engine.sample(2, temperature=0.5, seed=0)
    assert all(m.n_steps == engine.steps and np.count_nonzero(m.events > NOTE_OFF) > 0 for m in melodies)
    again = engine.reconstruct(melodies[0])
    assert again.n_steps == engine.steps


def test_fine_tuned_models_went_on_from_their_sources_step():
    """A fine-tune's schedules go on from the step its init_from model was trained to, which the trainer reads from
    that model: the offset each shipped fine-tune ran with (its extra; older files kept it in the config) is it."""
    tuned = {}
    for name in SHIPPED:
        stored = json.loads((CHECKPOINTS_DIR / name / "config.json").read_text())
        if stored["config"].get("init_from"):
            tuned[name] = stored
    assert "triple" in tuned
    for name, stored in tuned.items():
        offset = stored["extra"].get("schedule_offset", stored["config"].get("schedule_offset"))
        source = load_model(stored["config"]["init_from"], device="cpu")
        assert offset == source.extra["step"], f"{name} ran its schedules from step {offset}, not its source's"
