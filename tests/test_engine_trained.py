"""Claims that need a model that has learned something: novelty ranks and attribute vectors.

A tiny LSTM VAE is trained for ~30 s on patterned melodies whose density (notes every 2, 4 or 8
steps), interval and direction vary, so its latent has to carry those qualities.
"""

import numpy as np
import pytest
import torch

from seqvae.codec import EventCodec, Melody
from seqvae.engine import AttributeVectors, Engine
from seqvae.evaluate.attributes import (
    attribute_values,
    compute_attribute_vectors,
    measure_monotonicity,
    quartile_groups,
    spearman,
)
from seqvae.models import build_model, get_config, vae_loss

pytestmark = pytest.mark.slow


def patterned_melodies(n: int, seed: int, steps: int = 32) -> np.ndarray:
    """Melodies with a regular rhythm and a steady melodic step: learnable in seconds."""
    rng = np.random.default_rng(seed)
    codec = EventCodec()
    out = np.zeros((n, steps), np.int64)
    for i in range(n):
        period = int(rng.choice([2, 4, 8]))
        step = int(rng.integers(0, 6))
        direction = int(rng.choice([-1, 1]))
        pitch = int(rng.integers(55, 80))
        staccato = period >= 4 and rng.random() < 0.5
        for t in range(0, steps, period):
            out[i, t] = codec.pitch_to_class(pitch)
            if staccato:
                out[i, t + period // 2] = 1
            if not 48 <= pitch + direction * step <= 88:
                direction = -direction
            pitch += direction * step
    return out


@pytest.fixture(scope="module")
def trained() -> tuple[Engine, np.ndarray]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model gains nothing from threads, and on a shared machine they only wait
    try:
        torch.manual_seed(0)
        config = get_config("tiny_lstm")
        model = build_model(config)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
        train = patterned_melodies(2048, seed=1)
        data = torch.from_numpy(train)
        generator = torch.Generator().manual_seed(0)
        for _ in range(600):
            x = data[torch.randint(0, len(data), (64,), generator=generator)]
            out = model(x, eps=torch.randn(64, config.z_size, generator=generator))
            terms = vae_loss(out, x, beta=0.01, free_bits=0.0)
            optimiser.zero_grad()
            terms.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
        assert float(terms.accuracy) > 0.74, "the fixture model did not learn; the tests below would mean nothing"
        yield Engine(model.eval(), device="cpu"), train
    finally:
        torch.set_num_threads(threads)


def test_novelty_ranks_shuffled_and_random_above_real(trained):
    engine, _ = trained
    held_out = [Melody(row) for row in patterned_melodies(64, seed=99)]
    rng = np.random.default_rng(0)
    shuffled = [Melody(rng.permutation(m.events)) for m in held_out]
    random = [Melody(row) for row in rng.integers(0, engine.codec.num_classes, (64, 32))]
    real, mixed, noise = engine.novelty(held_out), engine.novelty(shuffled), engine.novelty(random)
    # probability that a shuffled (random) melody scores above a real one: 0.5 would be chance
    assert np.mean(mixed[:, None] > real[None, :]) > 0.9
    assert np.mean(noise[:, None] > real[None, :]) > 0.99
    assert real.mean() < mixed.mean() < noise.mean()


def test_attribute_vectors_move_their_attribute(trained, tmp_path):
    engine, train = trained
    mu = engine.embed([Melody(row) for row in train])
    vectors = compute_attribute_vectors(mu, train, meta={"data": "patterned"})
    assert "density" in vectors.names and vectors.vectors.shape == (len(vectors.names), engine.z_size)
    assert "syncopation_16th" not in vectors.names  # every note sits on an even step: no direction to learn
    density_info = vectors.info[vectors.names.index("density")]
    assert density_info.high_mean > density_info.low_mean
    engine.set_attribute_vectors(vectors)
    held_out = patterned_melodies(32, seed=98)
    results = {r.name: r for r in measure_monotonicity(engine, vectors, held_out, amounts=(-1.0, -0.5, 0.0, 0.5, 1.0))}
    density = results["density"]
    assert density.spearman > 0.85 and density.increasing_fraction >= 0.75, density
    assert density.per_melody_spearman > 0.5, density
    assert density.means[-1] > 2 * density.means[0]
    # shifting one melody the same way: denser out than in
    sparse = Melody(held_out[np.argmin(attribute_values(held_out, "density"))])
    denser = engine.shift(sparse, "density", 1.0)
    assert attribute_values(denser.events, "density")[0] > attribute_values(sparse.events, "density")[0]
    # saved vectors come back identical, with their measurement
    vectors.meta["monotonicity"] = {"density": density.spearman}
    vectors.save(tmp_path)
    again = AttributeVectors.load(tmp_path, engine.z_size)
    np.testing.assert_array_equal(again.vectors, vectors.vectors)
    assert again.names == vectors.names and again.meta["monotonicity"]["density"] == density.spearman


def test_measurement_helpers():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 2, 3], [5, 5, 5]))
    low, high = quartile_groups(np.array([5.0, 1.0, np.nan, 3.0, 8.0, 2.0, 7.0, 4.0, 6.0]))
    assert sorted(low.tolist()) == [1, 5] and sorted(high.tolist()) == [4, 6]
    with pytest.raises(ValueError, match="unknown attribute 'loudness'"):
        attribute_values(np.zeros((1, 32), int), "loudness")
    with pytest.raises(ValueError, match="at least 8 melodies"):
        compute_attribute_vectors(np.zeros((3, 4)), np.zeros((3, 32), int))


def test_morph_knob_moves_smoothly_from_a_to_b(trained):
    engine, _ = trained
    rows = patterned_melodies(40, seed=97)
    a, b = Melody(rows[0]), Melody(rows[1])
    ends = engine.reconstruct(a).events, engine.reconstruct(b).events
    assert np.sum(ends[0] != ends[1]) >= 8, "endpoints too alike to test a path"
    path = [engine.morph(a, b, t).events for t in np.linspace(0.0, 1.0, 41)]
    to_a = [int(np.sum(p != ends[0])) for p in path]
    to_b = [int(np.sum(p != ends[1])) for p in path]
    assert to_a[0] == 0 and to_b[-1] == 0
    assert np.mean(to_a[21:]) > np.mean(to_a[:20]) and np.mean(to_b[21:]) < np.mean(to_b[:20])
    steps = [int(np.sum(p != q)) for p, q in zip(path, path[1:], strict=False)]
    assert np.mean(steps) < 0.25 * np.sum(ends[0] != ends[1])  # a small knob move is a small change
