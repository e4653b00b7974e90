"""Evaluation: melody features on known melodies, histogram overlap, slerp, reconstruction metrics, the CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seqvae.codec import EventCodec, Note
from seqvae.data.synthetic import synthetic_windows, write_synthetic_corpus
from seqvae.engine import Engine
from seqvae.evaluate import features
from seqvae.evaluate import precision as precision_module
from seqvae.evaluate.interpolation import interpolation_check, slerp
from seqvae.evaluate.precision import agreement_latents, precision_agreement
from seqvae.evaluate.prior import histogram_overlap
from seqvae.evaluate.reconstruction import reconstruction_metrics
from seqvae.models import build_model, get_config, load_model, save_model
from seqvae.models.precision import parse_precision

CODEC = EventCodec()


def melody(notes: list[tuple[int, int, int]], steps: int = 32) -> np.ndarray:
    return CODEC.notes_to_events([Note(p, s, e) for p, s, e in notes], steps)


# C E G C' on beats, each a quarter long: 4 notes, all in C major
ARPEGGIO = melody([(60, 0, 4), (64, 4, 8), (67, 8, 12), (72, 12, 16)])
# off-beat notes: steps 1 (16th off-beat), 6 (8th off-beat), 10 (8th off-beat), 13 (16th); F# out of C major
SYNCOPATED = melody([(60, 1, 3), (62, 6, 8), (66, 10, 12), (64, 13, 14)])
SILENT = np.zeros(32, dtype=np.int64)


def test_features_on_known_melodies():
    assert features.note_density(ARPEGGIO) == pytest.approx(4 / 32)
    assert features.pitch_range(ARPEGGIO) == 12
    assert features.mean_interval(ARPEGGIO) == pytest.approx((4 + 3 + 5) / 3)
    assert features.in_key_ratio(ARPEGGIO) == 1.0
    assert features.syncopation_16th(ARPEGGIO) == 0.0 and features.syncopation_8th(ARPEGGIO) == 0.0
    assert features.rest_ratio(ARPEGGIO) == pytest.approx(16 / 32)
    assert features.syncopation_16th(SYNCOPATED) == pytest.approx(2 / 4)
    assert features.syncopation_8th(SYNCOPATED) == pytest.approx(2 / 4)
    assert features.in_key_ratio(SYNCOPATED) == pytest.approx(1.0)  # C D F# E all fit G major
    # C C# D D#: no key holds all four; C# major holds C (B#), C# and D#
    assert features.in_key_ratio(melody([(60, 0, 2), (61, 2, 4), (62, 4, 6), (63, 6, 8)])) == pytest.approx(0.75)
    # rests: sounding 1-2, 6-7, 10-11, 13 -> 7 of 32 steps sound
    assert features.rest_ratio(SYNCOPATED) == pytest.approx(25 / 32)
    for name, fn in features.ATTRIBUTES.items():
        assert fn(SILENT) == 0.0, name
    assert features.rest_ratio(SILENT) == 1.0


def test_features_batch_equals_rows():
    batch = np.stack([ARPEGGIO, SYNCOPATED, SILENT]).astype(np.int8)
    for name, fn in {**features.ATTRIBUTES, **features.EVAL_FEATURES}.items():
        values = fn(batch)
        assert values.shape == (3,), name
        assert np.allclose(values, [fn(row) for row in batch]), name
    with pytest.raises(ValueError, match="integers"):
        features.note_density(np.zeros(32))
    with pytest.raises(ValueError, match=r"\[T\] or \[N, T\]"):
        features.note_density(np.zeros((2, 2, 2), dtype=int))


def test_transposition_keeps_key_ratio_and_intervals():
    up = np.where(ARPEGGIO >= 2, ARPEGGIO + 5, ARPEGGIO)
    assert features.in_key_ratio(up) == features.in_key_ratio(ARPEGGIO)
    assert features.mean_interval(up) == features.mean_interval(ARPEGGIO)


def test_histogram_overlap():
    rng = np.random.default_rng(0)
    edges = np.linspace(0, 1, 11)
    a = rng.random(1000)
    assert histogram_overlap(a, a, edges) == pytest.approx(1.0)
    assert histogram_overlap(np.full(10, 0.05), np.full(10, 0.95), edges) == 0.0
    assert 0.4 < histogram_overlap(a, a * 0.5, edges) < 0.6
    assert histogram_overlap(np.full(3, 5.0), np.full(3, 0.99), edges) == 1.0  # out-of-range values clip in


def test_slerp_endpoints_and_norm():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 16)), rng.standard_normal((3, 16))
    path = slerp(a, b, np.linspace(0, 1, 5))
    assert np.allclose(path[:, 0], a) and np.allclose(path[:, -1], b)
    same = slerp(a, a, np.array([0.5]))
    assert np.allclose(same[:, 0], a)
    unit = slerp(a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True),
                 np.array([0.3]))
    assert np.allclose(np.linalg.norm(unit, axis=2), 1.0)


def test_reconstruction_metrics_count_correct_steps():
    torch.manual_seed(0)
    model = build_model(get_config("tiny_lstm")).eval()
    with torch.no_grad():  # force the decoder to always predict "hold": accuracy = share of hold steps
        model.decoder.core.output.weight.zero_()
        model.decoder.core.output.bias.zero_()
        model.decoder.core.output.bias[0] = 10.0
    events = np.stack([ARPEGGIO, SYNCOPATED, SILENT])
    metrics = reconstruction_metrics(model, events, batch_size=2)
    expected = (events == 0).mean()
    assert metrics.teacher_forced_accuracy == pytest.approx(expected)
    assert metrics.greedy_accuracy == pytest.approx(expected)
    assert metrics.windows == 3 and len(metrics.kl_per_dim) == 8
    assert metrics.teacher_forced_by_step[0] == pytest.approx(2 / 3)  # ARPEGGIO alone starts with a note


def decoding_precision(model, precision: str) -> str:
    return model.decoding_precision(parse_precision(precision))  # what eval and the engine both do


def test_decoding_precision_picks_as_the_engine_does(monkeypatch):
    torch.manual_seed(0)
    model = build_model(get_config("tiny_lstm")).eval()
    assert decoding_precision(model, "float32") == decoding_precision(model, "fp32") == "float32"
    if model.bf16_decoding_available():
        assert decoding_precision(model, "bfloat16") == "bfloat16"
    else:
        with pytest.raises(ValueError, match="bfloat16 decoding needs"):
            decoding_precision(model, "bfloat16")
    with pytest.raises(ValueError, match="float32, bfloat16"):
        decoding_precision(model, "half")
    for available in (False, True):
        monkeypatch.setattr(model, "bf16_decoding_available", lambda available=available: available)
        assert decoding_precision(model, "auto") == "float32"  # float32 weights, or no AVX512-BF16
        assert Engine(model, device="cpu", precision="auto").precision == "float32"
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())  # weights that are bfloat16 values, as `seqvae train` ships them
    assert decoding_precision(model, "auto") == "bfloat16"
    assert Engine(model, device="cpu", precision="auto").precision == "bfloat16"


def test_precision_agreement_counts_melodies_and_tokens(monkeypatch):
    model = build_model(get_config("tiny_lstm")).eval()

    def decode(model, z, precision):  # bfloat16 gets one token wrong in the first melody of every batch
        tokens = torch.zeros(len(z), model.config.steps, dtype=torch.long)
        if precision == "bfloat16":
            tokens[0, 3] = 1
        return tokens

    monkeypatch.setattr(precision_module, "greedy_decode", decode)
    z = np.random.default_rng(0).standard_normal((5, model.config.z_size))
    agreement = precision_agreement(model, z, batch_size=2)  # batches of 2, 2 and 1: three melodies differ
    assert agreement.melodies == 5 and agreement.melody_agreement == pytest.approx(2 / 5)
    assert agreement.token_agreement == pytest.approx(1 - 3 / (5 * model.config.steps))
    assert agreement.float32_accuracy is None and agreement.bfloat16_accuracy is None
    targets = np.zeros((5, model.config.steps), dtype=np.int64)
    targets[:, -1] = 2  # one token no decode gets right; bfloat16's flipped tokens cost three more
    scored = precision_agreement(model, z, batch_size=2, targets=targets)
    assert scored.float32_accuracy == pytest.approx(1 - 5 / (5 * model.config.steps))
    assert scored.bfloat16_accuracy == pytest.approx(1 - 8 / (5 * model.config.steps))
    with pytest.raises(ValueError, match="one melody per latent"):
        precision_agreement(model, z, targets=targets[:4])
    with pytest.raises(ValueError, match="non-empty"):
        precision_agreement(model, np.zeros((0, model.config.z_size)))


def test_agreement_latents_are_seeded_draws_and_posterior_means():
    torch.manual_seed(0)
    model = build_model(get_config("tiny_lstm")).eval()
    prior, means = agreement_latents(model, None, 6, seed=1, batch_size=4)
    assert [prior.label, means.label] == ["prior latents", "posterior means"]
    assert all(s.z.shape == (6, model.config.z_size) and s.z.dtype == np.float32 for s in (prior, means))
    assert prior.targets is None and means.targets.shape == (6, model.config.steps)
    with torch.no_grad():  # the targets are the melodies whose posterior means the latents are
        assert np.allclose(model.encode(torch.from_numpy(means.targets))[0].numpy(), means.z, atol=1e-5)
    again = agreement_latents(model, None, 6, seed=1, batch_size=4)
    assert all(np.array_equal(a.z, b.z) for a, b in zip((prior, means), again, strict=True))
    assert not np.allclose(prior.z, means.z)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny model that really uses z: its corpus holds only four distinct melodies (untransposed), which a
    tiny LSTM VAE learns in seconds (varied melodies take it minutes)."""
    from seqvae.models import registry
    from seqvae.train import TrainOptions, train

    root = tmp_path_factory.mktemp("eval")
    corpus = root / "corpus"
    write_synthetic_corpus(corpus, 256, 32, 64, steps=32, seed=3)
    tunes = synthetic_windows(4, 32, seed=5)
    rng = np.random.default_rng(0)
    for split, count in (("train", 256), ("valid", 32), ("test", 64)):
        np.save(corpus / f"{split}.npy", tunes[rng.integers(0, 4, size=count)])
    registry.CONFIGS["tiny_lstm_fixed"] = dataclasses.replace(
        get_config("tiny_lstm"), name="tiny_lstm_fixed", transpose_low=0, transpose_high=0
    )
    try:
        train(TrainOptions(data=corpus, out=root / "run", config="tiny_lstm_fixed", train_steps=150, threads=1,
                           progress=False, eval_every=150))
    finally:
        del registry.CONFIGS["tiny_lstm_fixed"]
    return corpus, root / "run"


def test_interpolation_moves_from_start_to_end(trained):
    from seqvae.data.corpus import load_corpus
    from seqvae.models import load_model

    corpus, run = trained
    model = load_model(run, device="cpu").model
    events = np.asarray(load_corpus(corpus).split("test").events, dtype=np.int64)
    check = interpolation_check(model, events, pairs=10, points=7)
    assert check.distance_to_start[-1] > check.distance_to_start[0]
    assert check.distance_to_end[-1] < check.distance_to_end[0]
    assert check.monotonic_fraction > 0.7


def test_eval_cli_writes_json(trained, tmp_path, capsys):
    from seqvae.cli.main import main

    corpus, run = trained
    out = tmp_path / "eval.json"
    code = main(["eval", str(run), "--data", str(corpus), "--split", "test", "--json", str(out), "--limit", "40",
                 "--samples", "64", "--pairs", "8", "--threads", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "teacher-forced accuracy" in printed and "in_key_ratio" in printed and "monotonic" in printed
    report = json.loads(out.read_text())
    assert report["windows"] == 40 and report["model"] == "tiny_lstm_fixed"
    assert 0.8 < report["reconstruction"]["teacher_forced_accuracy"] <= 1.0
    assert {p["feature"] for p in report["prior"]} == set(features.EVAL_FEATURES)
    assert all(0.0 <= p["overlap"] <= 1.0 and 0.0 <= p["training_overlap"] <= 1.0 for p in report["prior"])
    assert report["interpolation"]["pairs"] == 8
    assert any(t["measure"] == "greedy accuracy" for t in report["targets"])
    assert "training windows" in printed and "prior samples" in printed
    copying = report["copying"]
    assert copying["samples"]["windows"] == 64 and copying["data"]["windows"] == 40
    assert all(0.0 <= copying[k]["mean_distance"] <= 1.0 for k in ("samples", "data"))


def test_eval_cli_errors(trained, tmp_path, capsys):
    from seqvae.cli.main import main

    corpus, run = trained
    assert main(["eval", "nonexistent_model", "--data", str(corpus)]) == 2
    assert "shipped models" in capsys.readouterr().err
    other = tmp_path / "long"
    write_synthetic_corpus(other, 8, 8, 8, steps=256, seed=0)
    assert main(["eval", str(run), "--data", str(other)]) == 2
    assert "--steps 32" in capsys.readouterr().err
    save_model(build_model(get_config("tiny_lstm")), tmp_path / "m")
    assert main(["eval", str(tmp_path / "m"), "--data", str(corpus), "--limit", "0"]) == 2


def test_eval_cli_precision(trained, tmp_path, capsys):
    """float32 unless asked; auto as the engine picks; the weights' hash; bfloat16 where it cannot run: the
    model's own error."""
    from seqvae.cli.main import main

    corpus, run = trained
    loaded = load_model(run, device="cpu")
    weights = hashlib.sha256((loaded.directory / "model.safetensors").read_bytes()).hexdigest()
    base = ["eval", str(run), "--data", str(corpus), "--limit", "16", "--samples", "0", "--pairs", "0",
            "--threads", "1"]
    for flags, expected in (([], "float32"), (["--precision", "auto"], decoding_precision(loaded.model, "auto"))):
        out = tmp_path / "eval.json"
        assert main([*base, *flags, "--json", str(out)]) == 0
        assert f"(decoded in {expected})" in capsys.readouterr().out
        report = json.loads(out.read_text())
        assert report["precision"] == expected and report["weights_sha256"] == weights
    if loaded.model.bf16_decoding_available():
        assert main([*base, "--precision", "bfloat16"]) == 0
    else:
        assert main([*base, "--precision", "bfloat16"]) == 2
        assert "AVX512-BF16" in capsys.readouterr().err
