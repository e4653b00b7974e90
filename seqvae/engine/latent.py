"""Latent-space geometry in numpy: interpolation paths, grids and variations.

Kept free of torch so the server can blend cached latents for a knob or an XY pad without
touching the model; only the final decode needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

METHODS = ("slerp", "lerp")
_PARALLEL_EPS = 1e-7


def as_latent(z: object, z_size: int, what: str = "latent") -> np.ndarray:
    """A float32 vector [z_size], or a ValueError saying what shape to send instead."""
    try:
        arr = np.asarray(z, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is not a vector of numbers: send {z_size} floats") from None
    arr = arr.reshape(-1) if arr.ndim == 2 and arr.shape[0] == 1 else arr
    if arr.shape != (z_size,):
        raise ValueError(f"{what} has shape {tuple(arr.shape)}; this model's latent has {z_size} values")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or infinity: send finite numbers")
    return arr


def check_position(t: float, name: str = "t", low: float = 0.0, high: float = 1.0) -> float:
    """A finite position inside [low, high], or a musician-readable error."""
    try:
        value = float(t)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={t!r} is not a number: send a value between {low:g} and {high:g}") from None
    if not np.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name}={t!r} is outside {low:g}..{high:g}: send a value between {low:g} and {high:g}")
    return value


def slerp(za: np.ndarray, zb: np.ndarray, t: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """Spherical interpolation, MusicVAE's choice: it keeps the path at the norms the prior expects.

    `t` a number gives one vector [Z]; `t` a sequence gives [len(t), Z]. Exact at t = 0 and 1;
    falls back to a straight line when the two vectors point the same (or opposite) way.
    """
    a = np.asarray(za, dtype=np.float64)
    b = np.asarray(zb, dtype=np.float64)
    ts = np.asarray(t, dtype=np.float64)
    scalar = ts.ndim == 0
    ts = ts.reshape(-1, 1)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    cos = float(np.dot(a, b) / norm) if norm > 0 else 1.0
    omega = float(np.arccos(np.clip(cos, -1.0, 1.0)))
    sin_omega = np.sin(omega)
    if sin_omega < _PARALLEL_EPS:
        out = (1.0 - ts) * a + ts * b
    else:
        out = (np.sin((1.0 - ts) * omega) / sin_omega) * a + (np.sin(ts * omega) / sin_omega) * b
    out = out.astype(np.float32)
    return out[0] if scalar else out


def lerp(za: np.ndarray, zb: np.ndarray, t: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """Straight-line interpolation (shapes as for `slerp`)."""
    a = np.asarray(za, dtype=np.float64)
    b = np.asarray(zb, dtype=np.float64)
    ts = np.asarray(t, dtype=np.float64)
    out = ((1.0 - ts.reshape(-1, 1)) * a + ts.reshape(-1, 1) * b).astype(np.float32)
    return out[0] if ts.ndim == 0 else out


def interpolate_latents(za: np.ndarray, zb: np.ndarray, t: float | Sequence[float] | np.ndarray,
                        method: str = "slerp") -> np.ndarray:
    """`slerp` or `lerp` by name; a clear error for any other method."""
    if method == "slerp":
        return slerp(za, zb, t)
    if method == "lerp":
        return lerp(za, zb, t)
    raise ValueError(f"interpolation method {method!r} is unknown: send one of {', '.join(METHODS)}")


def path_positions(points: int) -> np.ndarray:
    """`points` evenly spaced positions from 0 to 1, both ends included."""
    if not isinstance(points, (int, np.integer)) or isinstance(points, bool) or points < 2:
        raise ValueError(f"{points!r} path points: an interpolation needs a whole number of at least 2 points "
                         "(both ends)")
    return np.linspace(0.0, 1.0, int(points))


def blend_corners(za: np.ndarray, zb: np.ndarray, zc: np.ndarray, zd: np.ndarray, x: float, y: float,
                  method: str = "slerp") -> np.ndarray:
    """The latent at (x, y) of a square whose corners are a (0,0), b (1,0), c (0,1), d (1,1).

    Interpolates along x on the top (a-b) and bottom (c-d) edges, then along y between them; with
    `lerp` that is exactly bilinear. One vector [Z].
    """
    top = interpolate_latents(za, zb, x, method)
    bottom = interpolate_latents(zc, zd, x, method)
    return interpolate_latents(top, bottom, y, method)


def grid_latents(za: np.ndarray, zb: np.ndarray, zc: np.ndarray, zd: np.ndarray, rows: int, cols: int,
                 method: str = "slerp") -> np.ndarray:
    """[rows, cols, Z] latents spanning the four corners (a top-left, b top-right, c bottom-left, d bottom-right)."""
    for name, count in (("rows", rows), ("cols", cols)):
        if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 2:
            raise ValueError(f"{name}={count!r}: a grid needs at least 2 {name} so that both corners appear")
    xs = np.linspace(0.0, 1.0, int(cols))
    ys = np.linspace(0.0, 1.0, int(rows))
    top = interpolate_latents(za, zb, xs, method)  # [cols, Z]
    bottom = interpolate_latents(zc, zd, xs, method)
    out = np.empty((int(rows), int(cols), top.shape[1]), dtype=np.float32)
    for col in range(int(cols)):
        out[:, col] = interpolate_latents(top[col], bottom[col], ys, method)
    return out


def variations(z: np.ndarray, n: int, amount: float, rng: np.random.Generator,
               draw: Callable[[int, np.random.Generator], np.ndarray] | None = None) -> np.ndarray:
    """`n` latents at a controllable distance from `z`: slerp towards fresh prior samples by `amount`.

    amount 0 gives z itself, 1 gives unrelated prior samples (from `draw(n, rng)`, N(0, I) when
    None); in between the distance grows smoothly. [n, Z].
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n={n!r}: ask for a whole number of at least 1 variation")
    amount = check_position(amount, "amount")
    targets = draw(int(n), rng) if draw is not None else rng.standard_normal((int(n), z.shape[-1]))
    return np.stack([slerp(z, target, amount) for target in targets]).astype(np.float32)


def project_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PCA to two dimensions by SVD: (coordinates [n, 2], explained variance ratio [2])."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < 2:
        raise ValueError(f"a map needs at least 2 latent points, got {pts.shape[0] if pts.ndim == 2 else 0}")
    centred = pts - pts.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, vt.shape[0])
    coords = np.zeros((pts.shape[0], 2))
    coords[:, :k] = centred @ vt[:k].T
    var = singular**2
    total = var.sum()
    ratio = np.zeros(2)
    if total > 0:
        ratio[:k] = var[:k] / total
    return coords, ratio
