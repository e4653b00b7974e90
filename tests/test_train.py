"""Trainer: loss falls, resume is exact, SIGKILL never corrupts, 2 gloo processes == 1 process, schedules."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seqvae.data.synthetic import write_synthetic_corpus
from seqvae.models import get_config, load_model
from seqvae.models import registry as model_registry
from seqvae.train import (
    TRAIN_STATE_FILE,
    TrainOptions,
    describe,
    kl_weight,
    learning_rate,
    load_train_state,
    read_metrics,
    sampling_probability,
    train,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus")
    write_synthetic_corpus(path, 256, 48, 48, steps=32, seed=0)
    return path


def options(corpus: Path, out: Path, **kwargs) -> TrainOptions:
    defaults = dict(data=corpus, out=out, config="tiny_lstm", train_steps=10, threads=1, progress=False, log_every=1,
                    command="seqvae train (test)")
    defaults.update(kwargs)
    return TrainOptions(**defaults)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("name", ["tiny_lstm", "tiny_hier", "tiny_hier2", "tiny_transformer"])
def test_loss_falls(corpus, tmp_path, name):
    result = train(options(corpus, tmp_path / "run", config=name, train_steps=60, eval_every=60))
    rows = [r for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    first = np.mean([r["recon"] for r in rows[:5]])
    last = np.mean([r["recon"] for r in rows[-5:]])
    assert last < 0.6 * first, (first, last)
    assert result.valid is not None and result.valid["accuracy"] > 0.5
    loaded = load_model(tmp_path / "run", device="cpu")
    assert loaded.extra["step"] == 60 and loaded.config.name == name
    assert (tmp_path / "run" / "model" / "train_command.txt").read_text() == "seqvae train (test)\n"


def test_two_level_model_starts_from_a_flat_model_and_keeps_it(corpus, tmp_path):
    """init_segments copies a flat model into the segment level; freeze_segments keeps it there through training
    and resume, while the upper level learns."""
    from seqvae.models import build_model, save_model

    two = get_config("tiny_hier2")
    flat_config = dataclasses.replace(get_config("tiny_lstm"), name="tiny_flat16", steps=two.segment_steps,
                                      z_size=two.segment_z_size, decoder_sizes=two.decoder_sizes)
    torch.manual_seed(3)
    flat = build_model(flat_config)
    save_model(flat, tmp_path / "flat")
    model_registry.CONFIGS["tiny_hier2_init"] = dataclasses.replace(
        two, name="tiny_hier2_init", init_segments=str(tmp_path / "flat"), freeze_segments=True)
    model_registry.CONFIGS["tiny_hier2_bad"] = dataclasses.replace(
        two, name="tiny_hier2_bad", segment_z_size=4, init_segments=str(tmp_path / "flat"))
    try:
        before = {k: v.clone() for k, v in build_model(get_config("tiny_hier2_init")).state_dict().items()}
        train(options(corpus, tmp_path / "run", config="tiny_hier2_init", train_steps=6, checkpoint_every=3))
        train(options(corpus, tmp_path / "run", config=None, resume=True, train_steps=12))
        after = _weights(tmp_path / "run")
        for prefix, source in (("encoder.segment.", flat.encoder), ("decoder.core.", flat.decoder.core)):
            for key, value in source.state_dict().items():
                if prefix + key in after or not key.startswith("sigma."):
                    assert torch.equal(after[prefix + key], value), prefix + key
        moved = [k for k in after if k.startswith(("encoder.top.", "decoder.conductor", "decoder.to_segment"))
                 and not torch.equal(after[k], before[k])]
        assert moved, "the upper level did not learn"
        with pytest.raises(ValueError, match="z_size 8 .needs 4."):
            train(options(corpus, tmp_path / "bad", config="tiny_hier2_bad"))
    finally:
        for name in ("tiny_hier2_init", "tiny_hier2_bad"):
            model_registry.CONFIGS.pop(name, None)


def test_fine_tuning_starts_from_a_trained_model_and_continues_its_schedules(corpus, tmp_path):
    """init_from copies a trained model of the same shapes (here a 24-step one into a 32-step config: a recurrent
    model's weights do not depend on the window length); every schedule goes on from the step it was trained to."""
    from seqvae.models import build_model, save_model

    tiny = get_config("tiny_lstm")
    torch.manual_seed(4)
    source = build_model(dataclasses.replace(tiny, name="tiny_triple_source", steps=24, family="triple"))
    save_model(source, tmp_path / "source", extra={"step": 300})
    save_model(build_model(get_config("tiny_transformer")), tmp_path / "transformer")
    save_model(build_model(dataclasses.replace(tiny, z_size=4)), tmp_path / "smaller")
    model_registry.CONFIGS["tiny_lstm_tuned"] = dataclasses.replace(
        tiny, name="tiny_lstm_tuned", init_from=str(tmp_path / "source"))
    for source_name in ("transformer", "smaller"):
        model_registry.CONFIGS[f"tiny_lstm_from_{source_name}"] = dataclasses.replace(
            tiny, name=f"tiny_lstm_from_{source_name}", init_from=str(tmp_path / source_name))
    try:
        train(options(corpus, tmp_path / "start", config="tiny_lstm_tuned", train_steps=0))
        started = _weights(tmp_path / "start")
        assert started.keys() == source.state_dict().keys()
        assert all(torch.equal(started[k], v) for k, v in source.state_dict().items())
        train(options(corpus, tmp_path / "run", config="tiny_lstm_tuned", train_steps=4))
        rows = [r for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
        for row in rows:  # a row logs the step that ran at index step - 1
            assert row["learning_rate"] == pytest.approx(learning_rate(tiny, int(row["step"]) - 1 + 300), rel=1e-5)
            assert row["beta"] == pytest.approx(kl_weight(tiny, int(row["step"]) - 1 + 300), rel=1e-5)
        assert load_train_state(tmp_path / "run" / TRAIN_STATE_FILE).info["schedule_offset"] == 300
        assert load_model(tmp_path / "run", device="cpu").extra["schedule_offset"] == 300
        train(options(corpus, tmp_path / "resumed", config="tiny_lstm_tuned", train_steps=2))
        train(options(corpus, tmp_path / "resumed", config=None, resume=True, train_steps=4))
        a, b = _weights(tmp_path / "run"), _weights(tmp_path / "resumed")
        assert all(torch.equal(a[k], b[k]) for k in a)
        with pytest.raises(ValueError, match="it is a 'transformer' model and 'tiny_lstm_from_transformer' is 'lstm'"):
            train(options(corpus, tmp_path / "bad", config="tiny_lstm_from_transformer"))
        with pytest.raises(ValueError, match=r"its weights differ: encoder.mu.weight \(4, 64\) \(needs \(8, 64\)\)"):
            train(options(corpus, tmp_path / "bad", config="tiny_lstm_from_smaller"))
    finally:
        for name in ("tiny_lstm_tuned", "tiny_lstm_from_transformer", "tiny_lstm_from_smaller"):
            model_registry.CONFIGS.pop(name, None)
    with pytest.raises(ValueError, match="init_from and init_segments exclude each other"):
        dataclasses.replace(get_config("tiny_hier2_latent"), init_from="default")


@pytest.fixture(scope="module")
def corpus256(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus256")
    write_synthetic_corpus(path, 64, 12, 12, steps=256, seed=0)
    return path


def test_latent_stage_fits_the_upper_level_then_hands_over_to_events(corpus256, tmp_path):
    """latent_train_steps train the upper level on segment posteriors; events take over after them. The segment level
    stays the flat model's, and resume inside the latent stage and across the hand-over is exact."""
    from seqvae.models.checkpoint import load_model as load

    straight = train(options(corpus256, tmp_path / "a", config="tiny_hier2_latent", train_steps=42,
                             checkpoint_every=42))
    early = train(options(corpus256, tmp_path / "b", config="tiny_hier2_latent", train_steps=20, checkpoint_every=20))
    assert "(latent stage)" in describe(early)
    train(options(corpus256, tmp_path / "b", config=None, resume=True, train_steps=41, checkpoint_every=41))
    train(options(corpus256, tmp_path / "b", config=None, resume=True, train_steps=42, checkpoint_every=41))
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = [r for r in read_metrics(tmp_path / "a") if r["split"] == "train"]
    assert [r["stage"] for r in rows] == ["latent"] * 40 + ["events"] * 2
    assert all(r["accuracy"] is None for r in rows[:40]) and all(r["accuracy"] is not None for r in rows[40:])
    first, last = (np.mean([r["recon"] for r in part]) for part in (rows[:5], rows[35:40]))
    assert last < 0.75 * first, ("the latent stage did not fit", first, last)
    assert straight.valid is not None and straight.valid["greedy_accuracy"] is not None
    flat = load("default", device="cpu").model
    for key, value in flat.encoder.state_dict().items():  # sigma too: the latent stage reads it
        assert torch.equal(a["encoder.segment." + key], value.float()), key
    for key, value in flat.decoder.core.state_dict().items():
        assert torch.equal(a["decoder.core." + key], value.float()), key


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_train_state(run / TRAIN_STATE_FILE).model


def test_resume_is_exact(corpus, tmp_path):
    """5 steps + resume to 10 == 10 steps straight, bitwise (scheduled sampling active)."""
    tiny = get_config("tiny_lstm")
    model_registry.CONFIGS["tiny_lstm_ss"] = dataclasses.replace(tiny, name="tiny_lstm_ss", sampling_rate=2.0)
    try:
        straight = train(options(corpus, tmp_path / "a", config="tiny_lstm_ss", checkpoint_every=5))
        train(options(corpus, tmp_path / "b", config="tiny_lstm_ss", train_steps=5, checkpoint_every=5))
        resumed = train(options(corpus, tmp_path / "b", config=None, train_steps=10, resume=True, checkpoint_every=5,
                                command="seqvae train --resume (test)"))
    finally:
        del model_registry.CONFIGS["tiny_lstm_ss"]
    assert straight.step == resumed.step == 10
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = load_train_state(tmp_path / "a" / TRAIN_STATE_FILE), load_train_state(tmp_path / "b" / TRAIN_STATE_FILE)
    for index, slot in sa.optimizer["state"].items():
        assert torch.equal(slot["exp_avg_sq"], sb.optimizer["state"][index]["exp_avg_sq"])
    rows_a = [r for r in read_metrics(tmp_path / "a") if r["split"] == "train"]
    rows_b = [r for r in read_metrics(tmp_path / "b") if r["split"] == "train"]
    assert [r["step"] for r in rows_b] == list(range(1, 11))
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]
    assert rows_b[-1]["sampling_prob"] > 0.5
    command = (tmp_path / "b" / "model" / "train_command.txt").read_text().splitlines()
    assert command == ["seqvae train (test)", "seqvae train --resume (test)"]


def _rewrite_info(path: Path, change) -> None:
    """Edit the JSON info of a training checkpoint in place, as an older trainer would have written it."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    info = json.loads(metadata["info"])
    change(info)
    save_file(tensors, str(path), metadata={**metadata, "info": json.dumps(info)})


def test_precision_has_one_spelling_and_older_runs_resume(corpus, tmp_path):
    """fp32 and bf16 are read as float32 and bfloat16, which is what a run records; a run saved with the short form,
    and with its schedule offset inside its config, resumes on the same curves."""
    from seqvae.cli.main import main

    assert TrainOptions(data=corpus, out=tmp_path, precision="bf16").precision == "bfloat16"
    with pytest.raises(ValueError, match="fp32 / bf16"):
        TrainOptions(data=corpus, out=tmp_path, precision="fp16")
    run = tmp_path / "run"
    assert main(["train", "--config", "tiny_lstm", "--data", str(corpus), "--out", str(run), "--steps", "2",
                 "--precision", "fp32", "--no-progress", "--threads", "1", "--log-every", "1"]) == 0
    assert load_train_state(run / TRAIN_STATE_FILE).info["precision"] == "float32"

    def older(info: dict) -> None:
        info["precision"] = "fp32"
        info["config"]["schedule_offset"] = info.pop("schedule_offset") + 300

    _rewrite_info(run / TRAIN_STATE_FILE, older)
    train(options(corpus, run, config=None, resume=True, train_steps=4, precision="fp32"))
    state = load_train_state(run / TRAIN_STATE_FILE)
    assert state.info["precision"] == "float32" and state.info["schedule_offset"] == 300
    assert "schedule_offset" not in state.info["config"]
    rows = [r for r in read_metrics(run) if r["split"] == "train"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for row in rows[2:]:
        assert row["learning_rate"] == pytest.approx(learning_rate(get_config("tiny_lstm"), row["step"] - 1, 300),
                                                     rel=1e-5)


def test_run_directory_guards(corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(options(corpus, tmp_path / "r", resume=True))
    train(options(corpus, tmp_path / "r", train_steps=2))
    with pytest.raises(FileExistsError, match="--resume"):
        train(options(corpus, tmp_path / "r", train_steps=2))
    with pytest.raises(ValueError, match="batch size"):
        train(options(corpus, tmp_path / "r", train_steps=4, resume=True, batch_size=8))
    with pytest.raises(ValueError, match="--steps 256"):
        train(options(corpus, tmp_path / "x", config="mel_16bar_hier"))
    with pytest.raises(ValueError, match="tiny_lstm"):
        train(options(corpus, tmp_path / "y", config="no_such_config"))


def test_sigkill_never_leaves_a_corrupt_checkpoint(corpus, tmp_path):
    """Kill -9 a run at arbitrary moments (checkpointing every step); the checkpoint always loads and resumes."""
    run = tmp_path / "killed"
    command = [sys.executable, "-m", "seqvae.cli.main", "train", "--config", "tiny_lstm", "--data", str(corpus),
               "--out", str(run), "--steps", "100000", "--checkpoint-every", "1", "--eval-every", "100000",
               "--threads", "1", "--no-progress"]
    rng = np.random.default_rng(0)
    last_step = 0
    for attempt in range(3):
        proc = subprocess.Popen(command + (["--resume"] if attempt else []), env=_env(), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline and not (run / TRAIN_STATE_FILE).is_file():
            time.sleep(0.05)
        time.sleep(float(rng.uniform(0.3, 1.5)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        state = load_train_state(run / TRAIN_STATE_FILE)
        assert state.step >= last_step
        last_step = state.step
        load_model(run, device="cpu")
    assert last_step > 0
    resumed = train(options(corpus, run, train_steps=last_step + 2, resume=True))
    assert resumed.step == last_step + 2


@pytest.mark.parametrize("name", ["tiny_lstm", "tiny_hier2_latent"])
def test_two_gloo_processes_match_one(corpus, corpus256, tmp_path, name):
    """torchrun with 2 CPU processes (global batch split in two) computes the same run as 1 process; for the
    two-level model through its latent stage (40 steps) and on into events."""
    steps, data = ("4", corpus) if name == "tiny_lstm" else ("41", corpus256)
    base = ["--config", name, "--data", str(data), "--steps", steps, "--batch-size", "8",
            "--checkpoint-every", steps, "--eval-every", steps, "--no-progress"]
    single = subprocess.run([sys.executable, "-m", "seqvae.cli.main", "train", *base, "--out", str(tmp_path / "one")],
                            env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr

    def run_two(out: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
             "seqvae.cli.main", "train", *base, "--out", str(out)],
            env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300,
        )

    two_dir = tmp_path / "two"
    double = run_two(two_dir)
    if double.returncode != 0 and "terminate called without an active exception" in double.stderr:
        # Seen once in ~20 runs on a loaded machine: a gloo worker thread aborting at interpreter teardown,
        # after training finished. One fresh retry; the weights are still compared below.
        two_dir = tmp_path / "two-retry"
        double = run_two(two_dir)
    assert double.returncode == 0, double.stderr[-3000:]
    one, two = _weights(tmp_path / "one"), _weights(two_dir)
    for key in one:
        assert torch.allclose(one[key], two[key], atol=1e-5, rtol=1e-4), key
    changed = load_train_state(tmp_path / "one" / TRAIN_STATE_FILE)
    assert changed.step == int(steps)
    command = (two_dir / "model" / "train_command.txt").read_text()
    assert command.startswith("torchrun --nproc_per_node 2")


def test_schedules_follow_musicvae_formulas():
    config = dataclasses.replace(get_config("mel_2bar_small"))
    assert learning_rate(config, 0) == pytest.approx(1e-3)
    assert learning_rate(config, 10**7) == pytest.approx(1e-5)
    assert learning_rate(config, 10000) == pytest.approx((1e-3 - 1e-5) * 0.9999**10000 + 1e-5)
    assert kl_weight(config, 0) == 0.0
    assert kl_weight(config, 10**7) == pytest.approx(0.2)
    assert sampling_probability(config, 0) == pytest.approx(1 - 1000 / 1001)
    assert sampling_probability(config, 10000) == pytest.approx(1 - 1000 / (1000 + np.exp(10)))
    assert sampling_probability(config, 10**9) == 1.0
    assert sampling_probability(dataclasses.replace(config, sampling_rate=0.0), 5000) == 0.0
    for function in (learning_rate, kl_weight, sampling_probability):  # a fine-tune goes on where its source stopped
        assert function(config, 100, offset=15634) == function(config, 15734)


def test_cli_train_and_errors(corpus, tmp_path, capsys):
    from seqvae.cli.main import main

    assert main(["train", "--config", "tiny_hier", "--data", str(corpus), "--out", str(tmp_path / "c"), "--steps",
                 "3", "--no-progress", "--threads", "1"]) == 0
    assert "step 3" in capsys.readouterr().out
    assert main(["train", "--config", "tiny_hier", "--data", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "d")]) == 2
    assert "seqvae data build" in capsys.readouterr().err
    assert main(["train", "--config", "tiny_hier", "--data", str(corpus), "--out", str(tmp_path / "e"),
                 "--steps", "0"]) == 2


def test_set_changes_a_new_runs_config_and_is_recorded(corpus, tmp_path):
    train(options(corpus, tmp_path / "run", settings=("max_beta=0.5", "decoder_sizes=16,16"), train_steps=1))
    config = load_model(tmp_path / "run" / "model").config
    assert config.max_beta == 0.5 and config.decoder_sizes == (16, 16)
    with pytest.raises(ValueError, match="drop --set"):
        train(options(corpus, tmp_path / "run", config=None, resume=True, settings=("max_beta=1",), train_steps=2))
