"""The fitted latent prior: fit, sample, files, and that sampling, eval and the attributes command use it."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from seqvae.data.synthetic import write_synthetic_corpus
from seqvae.engine import Engine
from seqvae.models import LatentPrior, build_model, get_config, save_model


def test_fit_recovers_mean_and_covariance():
    rng = np.random.default_rng(0)
    true_mean = np.array([3.0, -1.0, 0.5])
    mixing = np.array([[1.0, 0.0, 0.0], [0.8, 0.3, 0.0], [0.0, 0.0, 0.1]])
    mu = true_mean + rng.standard_normal((20000, 3)) @ mixing.T
    prior = LatentPrior.fit(mu)
    draws = prior.sample(20000, np.random.default_rng(1))
    assert draws.dtype == np.float32 and draws.shape == (20000, 3)
    np.testing.assert_allclose(draws.mean(0), true_mean, atol=0.05)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), mixing @ mixing.T, atol=0.05)
    np.testing.assert_array_equal(prior.sample(4, np.random.default_rng(7)), prior.sample(4, np.random.default_rng(7)))


def test_gaussian_data_keep_the_gaussian():
    """Held-out likelihood picks the single Gaussian when the latents are one Gaussian."""
    mu = np.random.default_rng(0).standard_normal((3000, 6)) * [1, 2, 3, 1, 1, 0.5]
    prior = LatentPrior.fit(mu)
    assert prior.centers is None and "Gaussian" in prior.describe()


def test_clustered_data_get_the_kernel_density(tmp_path):
    """Latents in well-separated clusters (as keys are): the kernel density wins on held-out likelihood, its draws
    stay near the clusters where a Gaussian's fill the gaps, and it keeps the data's mean and covariance."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 5)) * 4.0
    mu = centres[rng.integers(0, 6, 4000)] + 0.3 * rng.standard_normal((4000, 5))
    prior = LatentPrior.fit(mu)
    assert prior.centers is not None and 0 < prior.bandwidth < 1
    draws = prior.sample(4000, np.random.default_rng(1))
    gap = lambda z: np.min(((z[:, None] - centres[None]) ** 2).sum(-1), axis=1).mean()  # noqa: E731
    gaussian = LatentPrior._gaussian(mu, 1e-4, len(mu)).sample(4000, np.random.default_rng(1))
    assert gap(draws) < 0.25 * gap(gaussian)
    np.testing.assert_allclose(draws.mean(0), mu.mean(0), atol=0.3)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), np.cov(mu, rowvar=False), rtol=0.15, atol=0.5)
    os.umask(umask := os.umask(0o022))
    prior.save(tmp_path)
    assert (tmp_path / "latent_prior.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # not owner-only
    loaded = LatentPrior.load(tmp_path, 5)
    assert loaded.bandwidth == prior.bandwidth and loaded.centers.shape == prior.centers.shape
    np.testing.assert_array_equal(loaded.sample(5, np.random.default_rng(3)), prior.sample(5, np.random.default_rng(3)))
    assert "held-out likelihood" in loaded.describe()
    prior.with_bandwidth(prior.bandwidth / 2, "narrowed for a test").save(tmp_path)
    narrow = LatentPrior.load(tmp_path, 5)
    assert narrow.bandwidth == prior.bandwidth / 2 and "narrowed for a test" in narrow.describe()
    assert gap(narrow.sample(4000, np.random.default_rng(1))) < gap(draws)
    capped = LatentPrior.fit(mu, max_centers=300)  # a smaller file: fewer centres, the same data's moments
    assert capped.centers.shape == (300, 5) and capped.windows == len(mu)
    np.testing.assert_allclose(capped.mean, prior.mean)
    with pytest.raises(ValueError, match="at least one centre"):
        LatentPrior.fit(mu, max_centers=0)
    with pytest.raises(ValueError, match="positive"):
        prior.with_bandwidth(0.0)
    with pytest.raises(ValueError, match="no bandwidth"):
        LatentPrior._gaussian(mu, 1e-4, len(mu)).with_bandwidth(0.5)


def test_fit_needs_more_melodies_than_dims():
    with pytest.raises(ValueError, match="more melodies than latent dims"):
        LatentPrior.fit(np.zeros((5, 8)))


def test_files_round_trip_and_errors(tmp_path):
    prior = LatentPrior.fit(np.random.default_rng(0).standard_normal((50, 4)) + 2)
    prior.save(tmp_path)
    loaded = LatentPrior.load(tmp_path, 4)
    np.testing.assert_allclose(loaded.mean, prior.mean, rtol=1e-6)
    assert loaded.windows == 50
    assert LatentPrior.load(tmp_path / "nothing", 4) is None
    with pytest.raises(ValueError, match="4-dim latent, the model has 8"):
        LatentPrior.load(tmp_path, 8)
    (tmp_path / "latent_prior.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="damaged"):
        LatentPrior.load(tmp_path, 4)


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    directory = tmp_path / "ckpt"
    save_model(build_model(get_config("tiny_lstm")), directory)
    return directory


def test_engine_samples_from_the_stored_prior(checkpoint):
    z_size = get_config("tiny_lstm").z_size
    plain = Engine.load(checkpoint, device="cpu")
    assert plain.latent_prior is None
    assert abs(plain.draw_prior(4000, np.random.default_rng(0)).mean()) < 0.05
    shifted = LatentPrior(np.full(z_size, 5.0), 0.1 * np.eye(z_size), 100)
    shifted.save(checkpoint)
    engine = Engine.load(checkpoint, device="cpu")
    z = engine.draw_prior(500, np.random.default_rng(0))
    assert abs(z.mean() - 5.0) < 0.05 and z.std() < 0.2
    # sample() decodes exactly those draws
    from_sample = engine.sample(3, temperature=0.0, seed=11)
    by_hand = engine.decode(engine.draw_prior(3, np.random.default_rng(11)), temperature=0.0, seed=11)
    assert all(np.array_equal(a.events, b.events) for a, b in zip(from_sample, by_hand, strict=True))
    # similar() at amount 1 lands on prior draws, not on N(0, I)
    melody = engine.sample(1, seed=1)[0]
    far = engine.similar(melody, n=2, amount=1.0, seed=3)
    assert len(far) == 2


def test_attributes_command_fits_the_prior_and_eval_uses_it(checkpoint, tmp_path, capsys):
    from seqvae.cli.main import main

    data = tmp_path / "data"
    write_synthetic_corpus(data, 300, 40, 40, steps=32, seed=0)
    assert main(["attributes", str(checkpoint), "--data", str(data), "--measure", "0", "--threads", "1",
                 "--centers", "150"]) == 0
    printed = capsys.readouterr().out
    assert "latent prior" in printed and "choosing the global kernel's bandwidth" in printed
    assert "choosing the local kernel's bandwidth" in printed and printed.count("<- kept") == 1
    prior = LatentPrior.load(checkpoint, get_config("tiny_lstm").z_size)
    assert prior is not None and prior.windows == 300 and len(prior.centers) == 150
    assert prior.centers is not None and "valid melodies" in prior.describe()  # bandwidth set against the valid split
    assert main(["eval", str(checkpoint), "--data", str(data), "--split", "test", "--samples", "20", "--pairs", "2",
                 "--threads", "1"]) == 0
    assert f"prior samples from {prior.describe()}" in capsys.readouterr().out
    assert "300 training" in prior.describe()


def test_a_local_kernel_moves_between_neighbouring_latents(tmp_path, monkeypatch):
    """Latents along a thin curve: the local kernel's draws stay on it (they move between each centre's nearest
    centres) where the global kernel's, at the same bandwidth, leave it in the directions the curve spans."""
    from seqvae.models import latent_prior

    rng = np.random.default_rng(0)
    t = rng.uniform(0, 2 * np.pi, 3000)
    mu = np.stack([3 * np.cos(t), 3 * np.sin(t), *(0.01 * rng.standard_normal((4, 3000)))], axis=1)
    prior = LatentPrior.fit(mu)
    assert prior.centers is not None and prior.kernel == "global"
    monkeypatch.setattr(latent_prior, "NEIGHBOUR_BLOCK", 500)  # several blocks, the last one partial
    local = prior.with_bandwidth(0.5).with_local_kernel(8)
    assert local.kernel == "local" and local.neighbours.shape == (len(prior.centers), 8)
    whitened = local._whiten(local.centers)
    for i in (0, 17, len(whitened) - 1):  # the 8 nearest by brute force, not the centre itself
        d = ((whitened - whitened[i]) ** 2).sum(axis=1)
        d[i] = np.inf
        assert set(local.neighbours[i].tolist()) == set(np.argsort(d)[:8].tolist())
    off_curve = lambda z: np.abs(np.hypot(z[:, 0], z[:, 1]) - 3).mean()  # noqa: E731
    draws = local.sample(2000, np.random.default_rng(1))
    assert draws.dtype == np.float32 and draws.shape == (2000, 6)
    assert off_curve(draws) < 0.25 * off_curve(prior.with_bandwidth(0.5).sample(2000, np.random.default_rng(1)))
    np.testing.assert_array_equal(draws, local.sample(2000, np.random.default_rng(1)))  # seeded
    local.save(tmp_path)
    loaded = LatentPrior.load(tmp_path, 6)
    assert loaded.kernel == "local" and (loaded.neighbours == local.neighbours).all()
    assert "nearest" in loaded.describe()
    np.testing.assert_array_equal(loaded.sample(5, np.random.default_rng(3)), local.sample(5, np.random.default_rng(3)))
    LatentPrior(local.mean, local.scale_tril, 3, local.centers, 0.5, neighbours=local.neighbours + 10**6).save(tmp_path)
    with pytest.raises(ValueError, match="damaged local-kernel neighbours"):
        LatentPrior.load(tmp_path, 6)
    with pytest.raises(ValueError, match="neighbours"):
        prior.with_local_kernel(len(prior.centers))
