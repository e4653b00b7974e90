"""Every Engine operation on tiny (untrained) models: shapes, determinism, endpoints, corners, errors (infill:
test_engine_infill.py)."""

import threading

import numpy as np
import pytest
import torch

from seqvae import Engine as LazyEngine
from seqvae.codec import EventCodec, Melody, Meter
from seqvae.data.synthetic import synthetic_windows
from seqvae.engine import AttributeVectors, Engine
from seqvae.models import build_model, get_config, plans, save_model
from seqvae.models.attribute_vectors import AttributeInfo

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _engine(name: str = "tiny_lstm", seed: int = 0) -> Engine:
    torch.manual_seed(seed)
    return Engine(build_model(get_config(name)), device="cpu")


@pytest.fixture(scope="module", params=["tiny_lstm", "tiny_hier", "tiny_hier2", "tiny_transformer"])
def engine(request) -> Engine:
    return _engine(request.param)


@pytest.fixture(scope="module")
def melodies() -> list[Melody]:
    return [Melody(row, meter=Meter(4, 4), bpm=100, program=40, velocity=70) for row in synthetic_windows(6, 32, 3)]


def _same(a: Melody, b: Melody) -> bool:
    return bool(np.array_equal(a.events, b.events))


def test_lazy_top_level_export():
    assert LazyEngine is Engine


def test_sample_shapes_and_seed(engine):
    first = engine.sample(4, temperature=0.8, seed=11)
    again = engine.sample(4, temperature=0.8, seed=11)
    other = engine.sample(4, temperature=0.8, seed=12)
    assert len(first) == 4 and all(m.n_steps == 32 and m.meter == Meter(4, 4) for m in first)
    assert all(_same(a, b) for a, b in zip(first, again, strict=True))
    assert not all(_same(a, b) for a, b in zip(first, other, strict=True))
    greedy = engine.sample(2, temperature=0.0, seed=5)
    assert all(_same(a, b) for a, b in zip(greedy, engine.sample(2, temperature=0.0, seed=5), strict=True))


def test_encode_decode_reconstruct(engine, melodies):
    mu, sigma = engine.encode(melodies)
    assert mu.shape == sigma.shape == (6, engine.z_size) and mu.dtype == np.float32
    assert np.all(sigma > 0)
    mu_one, _ = engine.encode(melodies[0])
    np.testing.assert_allclose(mu_one[0], mu[0], atol=1e-5)
    decoded = engine.decode(mu)
    assert len(decoded) == 6
    rec = engine.reconstruct(melodies[0])
    assert _same(rec, decoded[0])
    assert rec.bpm == 100 and rec.program == 40 and rec.velocity == 70  # the input's sound carries over
    assert _same(engine.decode(mu[0])[0], rec)  # a single vector works too
    np.testing.assert_array_equal(engine.embed(melodies), mu)


def test_interpolate_endpoints_and_methods(engine, melodies):
    a, b = melodies[:2]
    path = engine.interpolate(a, b, 6)
    assert len(path) == 6
    assert _same(path[0], engine.reconstruct(a)) and _same(path[-1], engine.reconstruct(b))
    za, zb = engine.latent(a), engine.latent(b)
    by_latent = engine.interpolate(za, zb, 6)
    assert all(_same(x, y) for x, y in zip(path, by_latent, strict=True))
    straight = engine.interpolate(a, b, 3, method="lerp")
    assert _same(straight[0], path[0]) and len(straight) == 3
    np.testing.assert_allclose(engine.slerp(za, zb, 0.0), za, atol=1e-5)
    np.testing.assert_allclose(engine.latent_path(a, b, 1.0), zb, atol=1e-5)


def test_grid_corners(engine, melodies):
    a, b, c, d = melodies[:4]
    grid = engine.grid(a, b, c, d, rows=3, cols=4)
    assert [len(row) for row in grid] == [4, 4, 4]
    for got, corner in ((grid[0][0], a), (grid[0][-1], b), (grid[-1][0], c), (grid[-1][-1], d)):
        assert _same(got, engine.reconstruct(corner))


def test_morph_is_deterministic_and_matches_the_path(engine, melodies):
    a, b, c, d = melodies[:4]
    assert _same(engine.morph(a, b, 0.0), engine.reconstruct(a))
    assert _same(engine.morph(a, b, 0.37), engine.morph(a, b, 0.37))
    warm = engine.morph(a, b, 0.6, temperature=1.0)
    assert _same(warm, engine.morph(a, b, 0.6, temperature=1.0))  # fixed default seed
    path = engine.interpolate(a, b, 5)
    assert _same(engine.morph(a, b, 0.5), path[2])
    assert _same(engine.morph_xy(a, b, c, d, 1.0, 1.0), engine.reconstruct(d))
    assert _same(engine.morph_xy(a, b, c, d, 0.5, 0.0), engine.morph(a, b, 0.5))


def test_similar_distance_grows_with_amount(engine, melodies):
    melody = melodies[0]
    same = engine.similar(melody, 3, 0.0, seed=1)
    assert all(_same(m, engine.reconstruct(melody)) for m in same)
    z = engine.latent(melody)
    rng_near = engine.similar(melody, 4, 0.2, seed=1)
    assert all(_same(x, y) for x, y in zip(rng_near, engine.similar(melody, 4, 0.2, seed=1), strict=True))
    # the latents behind the variations move away as amount grows
    from seqvae.engine.latent import variations
    near = np.linalg.norm(variations(z, 16, 0.1, np.random.default_rng(1)) - z, axis=1).mean()
    far = np.linalg.norm(variations(z, 16, 0.9, np.random.default_rng(1)) - z, axis=1).mean()
    assert near < far


def test_novelty_is_per_melody_and_repeatable(engine, melodies):
    scores = engine.novelty(melodies)
    assert scores.shape == (6,) and np.all(np.isfinite(scores)) and np.all(scores > 0)
    np.testing.assert_array_equal(scores, engine.novelty(melodies))
    np.testing.assert_allclose(engine.novelty(melodies[2])[0], scores[2], rtol=1e-5)


def test_shift_moves_along_the_stored_vector(tmp_path, melodies):
    engine = _engine("tiny_lstm")
    with pytest.raises(ValueError, match="no attribute vectors yet.*seqvae attributes"):
        engine.shift(melodies[0], "density", 1.0)
    assert engine.attributes == []
    vector = np.zeros((1, engine.z_size), np.float32)
    vector[0, 0] = 3.0
    vectors = AttributeVectors(["density"], vector, [AttributeInfo("density", 0, 1, 0, 1, 2, 2, 3.0)])
    save_model(engine.model, tmp_path)
    vectors.save(tmp_path)
    mode = lambda name: (tmp_path / name).stat().st_mode & 0o777  # noqa: E731
    assert mode("attributes.safetensors") == mode("config.json")  # readable like the model, not owner-only
    loaded = Engine.load(tmp_path, device="cpu")
    assert loaded.attributes == ["density"]
    z = engine.latent(melodies[0])
    assert _same(loaded.shift(melodies[0], "density", 0.5), loaded.decode(z + 0.5 * vector[0])[0])
    assert _same(loaded.shift(melodies[0], "density", 0.0), loaded.reconstruct(melodies[0]))
    with pytest.raises(ValueError, match="unknown attribute 'loudness': this model has density"):
        loaded.shift(melodies[0], "loudness", 1.0)


def test_inputs_from_notes_and_midi(tmp_path):
    engine = _engine("tiny_lstm")
    melody = engine.melody_from_notes([(60, 0, 1, 80), (67, 4, 2, 100)], bpm=140)
    assert melody.n_steps == 32 and melody.bpm == 140 and melody.meter == engine.meter
    from seqvae.codec import write_midi

    write_midi(melody, tmp_path / "m.mid")
    back = engine.melody_from_midi(tmp_path / "m.mid")
    assert _same(back, melody)
    assert engine.windows_from_midi(tmp_path / "m.mid")[0].bar == 1
    with pytest.raises(ValueError, match="does not fill"):
        engine.melody_from_notes([(60, 0, 1, 80)], meter="3/4")


def test_checkpoint_round_trip_and_triple_meter(tmp_path):
    engine = _engine("tiny_lstm")
    save_model(engine.model, tmp_path / "ck")
    loaded = Engine.load(str(tmp_path / "ck"), device="cpu")
    assert loaded.model_name == "ck" and loaded.device == "cpu"
    z = np.random.default_rng(0).standard_normal((3, engine.z_size)).astype(np.float32)
    assert all(_same(x, y) for x, y in zip(engine.decode(z), loaded.decode(z), strict=True))
    with pytest.raises(FileNotFoundError, match="no model named 'no_such_model'"):
        Engine.load("no_such_model")
    import dataclasses

    triple = Engine(build_model(dataclasses.replace(get_config("tiny_lstm"), steps=24, family="triple")))
    assert triple.meter == Meter(3, 4) and triple.sample(1)[0].n_steps == 24


def test_threads_share_one_engine(melodies):
    engine = _engine("tiny_lstm")
    expected = [engine.morph(melodies[0], melodies[1], t).events for t in (0.1, 0.5, 0.9)]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                for t, want in zip((0.1, 0.5, 0.9), expected, strict=True):
                    assert np.array_equal(engine.morph(melodies[0], melodies[1], t).events, want)
                engine.sample(2, seed=3)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_latent_cache_is_bounded_and_keyed_by_content(melodies):
    from seqvae.engine import engine as engine_module

    engine = _engine("tiny_lstm")
    z = engine.latent(melodies[0])
    z[:] = 99.0  # a caller scribbling on its copy does not reach the cache
    assert not np.allclose(engine.latent(melodies[0]), 99.0)
    copy = Melody(melodies[0].events.copy())
    assert np.array_equal(engine.latent(copy), engine.latent(melodies[0]))
    many = [Melody(row) for row in synthetic_windows(engine_module.CACHE_SIZE + 20, 32, 9)]
    engine.encode(many)  # encode itself does not fill the cache
    for melody in many:
        engine.latent(melody)
    assert len(engine._cache) <= engine_module.CACHE_SIZE


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda e, m: e.sample(0), "n=0"),
        (lambda e, m: e.sample(1, temperature=-1), "temperature"),
        (lambda e, m: e.sample(1, seed=-3), "seed"),
        (lambda e, m: e.encode([]), "no melodies"),
        (lambda e, m: e.encode([Melody(np.zeros(64, int))]), "64 steps but this model reads 32-step"),
        (lambda e, m: e.encode(["tune.mid"]), "not a Melody"),
        (lambda e, m: e.encode([Melody(np.zeros(32, int), codec=EventCodec(48, 84))]), "pitch range"),
        (lambda e, m: e.decode(np.zeros((2, 3))), r"send \[n, 8\]"),
        (lambda e, m: e.decode(np.full(8, np.nan)), "NaN"),
        (lambda e, m: e.interpolate(m[0], m[1], 1), "at least 2"),
        (lambda e, m: e.interpolate(m[0], m[1], 4, method="cubic"), "cubic"),
        (lambda e, m: e.interpolate(m[0], np.zeros(5), 4), "8 values"),
        (lambda e, m: e.grid(m[0], m[1], m[2], m[3], rows=1, cols=3), "at least 2 rows"),
        (lambda e, m: e.morph(m[0], m[1], 1.5), "outside 0..1"),
        (lambda e, m: e.morph_xy(m[0], m[1], m[2], m[3], 0.5, -0.1), "y=-0.1"),
        (lambda e, m: e.similar(m[0], 2, 2.0), "amount"),
        (lambda e, m: e.infill(m[0], 0, 1), "first bar 0 does not exist"),
        (lambda e, m: e.infill(m[0], 2, 1), "backwards"),
        (lambda e, m: e.infill(m[0], 1, 2), "whole melody"),
        (lambda e, m: e.infill(m[0], 1, 3), "last bar 3 does not exist"),
        (lambda e, m: e.novelty(m, samples=0), "samples"),
        (lambda e, m: e.melody_from_notes([(60, 9, 1, 80)]), "window of 8 beats"),
    ],
)
def test_bad_input_gets_a_clear_error(call, message, melodies):
    with pytest.raises(ValueError, match=message):
        call(_engine("tiny_lstm"), melodies)


def test_precision_choice(tmp_path, monkeypatch):
    """auto: bfloat16 arithmetic only for bfloat16-stored weights on a CPU that has it; float32 otherwise."""
    plain = Engine(build_model(get_config("tiny_lstm")))
    assert plain.precision == "float32"
    assert Engine(build_model(get_config("tiny_transformer"))).precision == "float32"
    with pytest.raises(ValueError, match="precision 'half'"):
        Engine(build_model(get_config("tiny_lstm")), precision="half")
    with monkeypatch.context() as patched:
        patched.setattr(plans, "plan_for", lambda core: None)  # as without the C kernel
        with pytest.raises(ValueError, match="bfloat16 decoding needs"):
            Engine(build_model(get_config("tiny_transformer")), precision="bfloat16")
    save_model(build_model(get_config("tiny_lstm")), tmp_path / "m", storage_dtype="bfloat16")
    stored = Engine.load(tmp_path / "m")
    if not stored.model.bf16_decoding_available():
        assert stored.precision == "float32"
        pytest.skip("this CPU or build has no bfloat16 dot products")
    assert stored.precision == "bfloat16"
    assert Engine.load(tmp_path / "m", precision="float32").precision == "float32"
    again = stored.sample(3, temperature=0.5, seed=4)
    for x, y in zip(stored.sample(3, temperature=0.5, seed=4), again, strict=True):
        assert np.array_equal(x.events, y.events)
