"""Latent geometry: slerp/lerp endpoints and norms, grids, variations, the 2-D projection."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from seqvae.engine.latent import (
    as_latent,
    blend_corners,
    check_position,
    grid_latents,
    interpolate_latents,
    lerp,
    path_positions,
    project_2d,
    slerp,
    variations,
)

finite = st.floats(-10, 10, allow_nan=False, width=32)
vectors = arrays(np.float32, 16, elements=finite)


@settings(max_examples=60, deadline=None)
@given(vectors, vectors)
def test_slerp_and_lerp_hit_both_ends(za, zb):
    for fn in (slerp, lerp):
        np.testing.assert_allclose(fn(za, zb, 0.0), za, atol=1e-5)
        np.testing.assert_allclose(fn(za, zb, 1.0), zb, atol=1e-5)


def test_slerp_keeps_norm_between_equal_norm_vectors():
    rng = np.random.default_rng(0)
    za, zb = rng.standard_normal((2, 64))
    zb *= np.linalg.norm(za) / np.linalg.norm(zb)
    path = slerp(za, zb, np.linspace(0, 1, 9))
    assert path.shape == (9, 64)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), np.linalg.norm(za), rtol=1e-5)
    # lerp sags through the middle, which is what slerp avoids
    assert np.linalg.norm(lerp(za, zb, 0.5)) < 0.9 * np.linalg.norm(za)


def test_slerp_parallel_vectors_falls_back_to_lerp():
    z = np.arange(1, 9, dtype=np.float32)
    np.testing.assert_allclose(slerp(z, 2 * z, 0.5), 1.5 * z, rtol=1e-6)
    np.testing.assert_allclose(slerp(z, z, 0.3), z, rtol=1e-6)


def test_interpolate_path_is_monotone_in_distance():
    rng = np.random.default_rng(1)
    za, zb = rng.standard_normal((2, 32))
    path = interpolate_latents(za, zb, path_positions(8), "slerp")
    to_a = np.linalg.norm(path - za, axis=1)
    assert np.all(np.diff(to_a) > 0)


def test_grid_corners_and_bilinear_middle():
    rng = np.random.default_rng(2)
    a, b, c, d = rng.standard_normal((4, 12)).astype(np.float32)
    grid = grid_latents(a, b, c, d, rows=3, cols=4)
    assert grid.shape == (3, 4, 12)
    for got, want in ((grid[0, 0], a), (grid[0, -1], b), (grid[-1, 0], c), (grid[-1, -1], d)):
        np.testing.assert_allclose(got, want, atol=1e-5)
    lerp_grid = grid_latents(a, b, c, d, rows=3, cols=3, method="lerp")
    np.testing.assert_allclose(lerp_grid[1, 1], (a + b + c + d) / 4, atol=1e-5)
    np.testing.assert_allclose(blend_corners(a, b, c, d, 0.5, 0.5, "lerp"), (a + b + c + d) / 4, atol=1e-5)
    np.testing.assert_allclose(blend_corners(a, b, c, d, 1.0, 0.0), b, atol=1e-5)


def test_variations_distance_follows_amount():
    rng = np.random.default_rng(3)
    z = rng.standard_normal(64).astype(np.float32)
    same = variations(z, 3, 0.0, np.random.default_rng(0))
    np.testing.assert_allclose(same, np.repeat(z[None], 3, 0), atol=1e-5)
    near = np.linalg.norm(variations(z, 50, 0.2, np.random.default_rng(0)) - z, axis=1).mean()
    far = np.linalg.norm(variations(z, 50, 0.8, np.random.default_rng(0)) - z, axis=1).mean()
    assert 0 < near < far
    again = variations(z, 4, 0.5, np.random.default_rng(7))
    np.testing.assert_array_equal(again, variations(z, 4, 0.5, np.random.default_rng(7)))


def test_project_2d_finds_the_main_direction():
    rng = np.random.default_rng(4)
    direction = rng.standard_normal(20)
    points = np.outer(np.linspace(-5, 5, 40), direction) + 0.01 * rng.standard_normal((40, 20))
    coords, explained = project_2d(points)
    assert coords.shape == (40, 2)
    assert explained[0] > 0.99
    assert abs(np.corrcoef(coords[:, 0], np.linspace(-5, 5, 40))[0, 1]) > 0.999


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: as_latent([1.0, 2.0], 3), "3 values"),
        (lambda: as_latent([1.0, np.nan, 2.0], 3), "NaN"),
        (lambda: as_latent("abc", 3), "not a vector"),
        (lambda: check_position(1.5), "outside 0..1"),
        (lambda: check_position("x"), "not a number"),
        (lambda: interpolate_latents(np.ones(3), np.ones(3), 0.5, "cubic"), "slerp, lerp"),
        (lambda: path_positions(1), "at least 2"),
        (lambda: grid_latents(*np.ones((4, 3)), rows=1, cols=3), "at least 2 rows"),
        (lambda: variations(np.ones(3), 0, 0.5, np.random.default_rng()), "at least 1"),
        (lambda: project_2d(np.ones((1, 3))), "at least 2"),
    ],
)
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
