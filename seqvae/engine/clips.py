"""Whole clips: a melody longer than the model's window, played with window by window.

A DAW clip is 4 to 16 bars; a model hears one window (2 bars of 4/4 for the default). A clip is a
`Melody` of any length in a meter whose bars fill the window; here it is cut into consecutive
windows (one latent each, latents [windows, Z]), every operation runs on each window's latent, all
windows go through the model in one encode and one decode call, and the windows are joined again.

Cutting: a clip that is not a whole number of windows is padded with rest to the next window (and
cut back to its length on the way out). A note held across a window boundary is struck again at the
start of the next window, so each window is a melody the model can hear whole (a window starts with
nothing sounding).

Joining, the tie rule: at a boundary where the decoded window before ends with pitch p sounding,
- the next window starting with a note-on of p is joined into one held note (a tie) only when the
  source clip held p across that boundary; otherwise it stays a new attack;
- the next window starting with a rest gets a note-off there (a window's opening rest is silence).
The source is the clip itself for reconstruct, similar, shift and infill; for morph and interpolate it
is the clip nearer the position (a below t = 0.5, b from 0.5), so t = 0 and t = 1 give each clip's own
reconstruction. Cutting a clip and joining its windows with its own ties gives the clip back exactly,
so a reconstruction keeps every tie the model reproduces.

Clips of different lengths (morph, interpolate): the shorter clip's windows repeat, as a DAW loops a
shorter clip, and the result has the longer clip's length. A clip not a whole number of windows loops
with its padding rest.

Chords (a chord model's `Engine.with_chords` view): the progression is laid over the clip from its first
step, repeating as often as the clip needs, and window k hears steps k*W .. (k+1)*W - 1 of it. So a
progression shorter than a window repeats inside every window, and one longer than a window goes on in
the next window ("C F G Am" on a 2-bar model: window 1 hears C F, window 2 G Am, window 3 C F again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from seqvae.codec import NO_EVENT, NOTE_OFF, Melody
from seqvae.codec.events import FIRST_NOTE_ON, EventCodec
from seqvae.engine import latent as lat

if TYPE_CHECKING:
    from seqvae.engine.engine import Engine


@dataclass(frozen=True)
class ClipLayout:
    """How a clip lies on the windows: its length in steps and the note held across each boundary."""

    n_steps: int
    held: tuple[int | None, ...]  # per boundary, the event class of the note held over it; None for none

    @property
    def windows(self) -> int:
        return len(self.held) + 1

    def looped(self, windows: int) -> tuple[int | None, ...]:
        """The ties of this clip's windows repeated to `windows` windows (none over a seam, where it starts again)."""
        seam = self.windows - 1
        return tuple(None if i % self.windows == seam else self.held[i % self.windows] for i in range(windows - 1))


# ---- cutting and joining (numpy only) ----------------------------------------------------------


def window_count(n_steps: int, steps: int) -> int:
    """Windows a clip of `n_steps` takes: at least one, a last partial window counts whole."""
    return max(1, -(-int(n_steps) // int(steps)))


def _sounding(events: np.ndarray) -> int | None:
    """The event class of the note still sounding after `events`, or None for silence."""
    for ev in events[::-1].tolist():
        if ev == NOTE_OFF:
            return None
        if ev >= FIRST_NOTE_ON:
            return int(ev)
    return None


def _padded(events: np.ndarray, n_steps: int) -> np.ndarray:
    """`events` padded with rest (a note-off ends a note sounding at the end) to `n_steps`."""
    out = np.zeros(n_steps, dtype=np.int64)
    out[:len(events)] = events
    if n_steps > len(events) and _sounding(events) is not None:
        out[len(events)] = NOTE_OFF
    return out


def layout(melody: Melody, steps: int) -> ClipLayout:
    """Where `melody`'s windows of `steps` meet, and which note it holds over each meeting."""
    windows = window_count(melody.n_steps, steps)
    events = _padded(melody.events, windows * steps)
    held: list[int | None] = []
    for k in range(1, windows):
        b = k * steps
        sounding = _sounding(events[:b])
        held.append(sounding if sounding is not None and events[b] == NO_EVENT else None)
    return ClipLayout(melody.n_steps, tuple(held))


def split_windows(melody: Melody, steps: int) -> np.ndarray:
    """The clip's windows [windows, steps]: padded with rest, a note held over a boundary struck again."""
    windows = window_count(melody.n_steps, steps)
    events = _padded(melody.events, windows * steps)
    rows = events.reshape(windows, steps).copy()
    for k in range(1, windows):
        sounding = _sounding(events[:k * steps])
        if sounding is not None and rows[k, 0] == NO_EVENT:
            rows[k, 0] = sounding
    return np.stack([melody.codec.canonical(row) for row in rows])


def join_windows(rows: np.ndarray, clip: ClipLayout, codec: EventCodec) -> np.ndarray:
    """Decoded windows [windows, steps] as one line of `clip.n_steps` events, by the tie rule (module doc)."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) != clip.windows:
        raise ValueError(f"{len(rows)} decoded windows for a clip of {clip.windows}")
    out = rows.reshape(-1).copy()
    steps = rows.shape[1]
    for k in range(1, len(rows)):
        b = k * steps
        out[b] = joined_token(_sounding(out[:b]), int(out[b]), clip.held[k - 1])
    return codec.check(out[:clip.n_steps])  # as decoded: every other step is the window's own token


def joined_token(sounding: int | None, first: int, held: int | None) -> int:
    """The token where a fresh window starting with `first` meets a line with `sounding` playing."""
    if sounding is None:
        return first
    if first == sounding and held == sounding:
        return NO_EVENT  # the source held this note over: keep it held
    if first in (NO_EVENT, NOTE_OFF):
        return NOTE_OFF
    return first


def loop_latents(z: np.ndarray, windows: int) -> np.ndarray:
    """A clip's latents [k, Z] repeated to `windows` rows (a shorter clip loops)."""
    z = np.asarray(z, dtype=np.float32).reshape(-1, np.shape(z)[-1])
    return z[np.arange(max(windows, len(z))) % len(z)]


def blend(za: np.ndarray, zb: np.ndarray, t: float, method: str = "slerp") -> np.ndarray:
    """Window by window, the latents [windows, Z] at position t from clip a to clip b (the shorter loops)."""
    za, zb = np.atleast_2d(za), np.atleast_2d(zb)
    windows = max(len(za), len(zb))
    za, zb = loop_latents(za, windows), loop_latents(zb, windows)
    t = lat.check_position(t)
    return np.stack([lat.interpolate_latents(a, b, t, method) for a, b in zip(za, zb, strict=True)])


def blend_layout(layouts: Sequence[ClipLayout], nearest: int) -> ClipLayout:
    """The layout a blend of several clips joins by: the nearest clip's ties (looped), and its length, or the
    longest clip's when the nearest one loops."""
    windows = max(clip.windows for clip in layouts)
    near = layouts[nearest]
    n_steps = near.n_steps if near.windows == windows else max(c.n_steps for c in layouts if c.windows == windows)
    return ClipLayout(n_steps, near.looped(windows))


def blend_corners(corners: Sequence[np.ndarray], x: float, y: float, method: str = "slerp") -> np.ndarray:
    """Window by window, the latents at (x, y) of an XY pad whose corners are clips a (0,0) b (1,0) c (0,1) d (1,1)."""
    rows = [np.atleast_2d(corner) for corner in corners]
    windows = max(len(r) for r in rows)
    looped = [loop_latents(r, windows) for r in rows]
    x, y = lat.check_position(x, "x"), lat.check_position(y, "y")
    return np.stack([lat.blend_corners(*(r[k] for r in looped), x, y, method) for k in range(windows)])


def nearest_corner(x: float, y: float) -> int:
    """Which corner (0 = a, 1 = b, 2 = c, 3 = d) an XY position is nearest: its ties join the windows."""
    return int(y >= 0.5) * 2 + int(x >= 0.5)


def morph_layout(a: ClipLayout, b: ClipLayout, t: float) -> ClipLayout:
    """The layout a blend at t joins by: a's below t = 0.5, b's from there (see `blend_layout`)."""
    return blend_layout([a, b], int(t >= 0.5))


# ---- the operations (one encode and one decode call each) -----------------------------------------


def check_clip(engine: Engine, clip: Melody, what: str = "clip") -> None:
    """A clip the engine can play window by window, or a clear error."""
    if not isinstance(clip, Melody):
        raise ValueError(f"{what} is a {type(clip).__name__}, not a Melody: read one with clip_from_midi or "
                         "clip_from_notes")
    if clip.codec != engine.codec:
        raise ValueError(f"{what} uses pitch range {clip.codec.min_pitch}..{clip.codec.max_pitch} but the model "
                         f"uses {engine.codec.min_pitch}..{engine.codec.max_pitch}")
    if not clip.meter.fits(engine.steps):
        raise ValueError(f"{what} is in {clip.meter}, whose bars do not fill this model's {engine.steps}-step "
                         f"window: send a clip in e.g. {engine.meter}")


def window_chords(engine: Engine, windows: int) -> np.ndarray | None:
    """The chords [windows, steps] each window of a clip hears (module doc), or None when the engine has no
    progression (a model without chords; a chord model then says what to send)."""
    if engine.progression is None:
        return None
    return engine.chord_steps(windows * engine.steps).reshape(windows, engine.steps)


def _chords_of(engine: Engine, window_counts: Sequence[int]) -> np.ndarray | None:
    """The chords of several clips' windows, stacked as their windows are."""
    parts = [window_chords(engine, count) for count in window_counts]
    return None if parts[0] is None else np.concatenate(parts)  # type: ignore[arg-type]


def encode(engine: Engine, clip: Melody) -> np.ndarray:
    """Posterior means [windows, Z], one per window of the clip."""
    check_clip(engine, clip)
    rows = split_windows(clip, engine.steps)
    return engine.encode_events(rows, chords=window_chords(engine, len(rows)))[0]


def decode(engine: Engine, z: np.ndarray, like: Melody, clip: ClipLayout | None = None, temperature: float = 0.0,
           seed: int | None = None) -> Melody:
    """Latents [windows, Z] as one melody, joined by `clip`'s ties (default: `like`'s), in `like`'s meter and sound."""
    return decode_many(engine, [z], [like], None if clip is None else [clip], temperature, seed)[0]


def decode_many(engine: Engine, zs: list[np.ndarray], likes: list[Melody], clips: list[ClipLayout] | None = None,
                temperature: float = 0.0, seed: int | None = None) -> list[Melody]:
    """Several clips' latents decoded in one call: each [windows, Z], joined as `decode` joins one."""
    layouts = clips or [layout(like, engine.steps) for like in likes]
    rows = [np.atleast_2d(np.asarray(z, dtype=np.float32)) for z in zs]
    tokens = engine.decode_events(np.concatenate(rows), temperature, seed,
                                  chords=_chords_of(engine, [len(z) for z in rows]))
    out, start = [], 0
    for z, like, clip in zip(rows, likes, layouts, strict=True):
        events = join_windows(tokens[start:start + len(z)], clip, engine.codec)
        out.append(as_clip_melody(events, like))
        start += len(z)
    return out


def as_clip_melody(events: np.ndarray, like: Melody) -> Melody:
    """Joined events in `like`'s meter, tempo and sound."""
    return Melody(events, meter=like.meter, bpm=like.bpm, program=like.program, velocity=like.velocity,
                  codec=like.codec)


def reconstruct(engine: Engine, clip: Melody, temperature: float = 0.0, seed: int | None = None) -> Melody:
    """Encode every window to its posterior mean and decode the clip again: what the model makes of it."""
    return decode(engine, encode(engine, clip), clip, temperature=temperature, seed=seed)


def _encode_all(engine: Engine, items: Sequence[Melody]) -> list[np.ndarray]:
    """Several clips' latents [windows, Z] from one encoder call (clips named a, b, c, d in errors)."""
    for name, clip in zip("abcd", items, strict=False):
        check_clip(engine, clip, f"clip {name}")
    rows = [split_windows(clip, engine.steps) for clip in items]
    z = engine.encode_events(np.concatenate(rows), chords=_chords_of(engine, [len(r) for r in rows]))[0]
    bounds = np.cumsum([0] + [len(r) for r in rows])
    return [z[bounds[i]:bounds[i + 1]] for i in range(len(items))]


def _pair(engine: Engine, a: Melody, b: Melody) -> tuple[np.ndarray, np.ndarray, ClipLayout, ClipLayout]:
    za, zb = _encode_all(engine, [a, b])
    return za, zb, layout(a, engine.steps), layout(b, engine.steps)


def morph(engine: Engine, a: Melody, b: Melody, t: float, temperature: float = 0.0, seed: int = 0,
          method: str = "slerp") -> Melody:
    """The clip at position t (0 = a, 1 = b), window by window; deterministic, as `Engine.morph`."""
    za, zb, la, lb = _pair(engine, a, b)
    t = lat.check_position(t)
    return decode(engine, blend(za, zb, t, method), a if t < 0.5 else b, morph_layout(la, lb, t), temperature, seed)


def morph_xy(engine: Engine, a: Melody, b: Melody, c: Melody, d: Melody, x: float, y: float,
             temperature: float = 0.0, seed: int = 0, method: str = "slerp") -> Melody:
    """The clip at (x, y) of an XY pad with corner clips a (0,0), b (1,0), c (0,1), d (1,1), window by window;
    the nearest corner's ties join the windows."""
    corners = [a, b, c, d]
    z_corners = _encode_all(engine, corners)
    nearest = nearest_corner(lat.check_position(x, "x"), lat.check_position(y, "y"))
    layouts = [layout(clip, engine.steps) for clip in corners]
    return decode(engine, blend_corners(z_corners, x, y, method), corners[nearest], blend_layout(layouts, nearest),
                  temperature, seed)


def interpolate(engine: Engine, a: Melody, b: Melody, points: int = 8, method: str = "slerp",
                temperature: float = 0.0, seed: int | None = None) -> list[Melody]:
    """`points` clips from a to b, both ends included, all decoded in one call."""
    positions = lat.path_positions(points)
    za, zb, la, lb = _pair(engine, a, b)
    zs = [blend(za, zb, float(t), method) for t in positions]
    likes = [a if t < 0.5 else b for t in positions]
    return decode_many(engine, zs, likes, [morph_layout(la, lb, float(t)) for t in positions], temperature, seed)


def variation_latents(z: np.ndarray, n: int, amount: float, rng: np.random.Generator, draw) -> list[np.ndarray]:
    """`n` variations of a clip's latents [windows, Z]: each window moved towards its own prior sample."""
    per_window = [lat.variations(zw, n, amount, rng, draw) for zw in np.atleast_2d(z)]  # [windows][n, Z]
    return [np.stack([w[i] for w in per_window]) for i in range(n)]


def similar(engine: Engine, clip: Melody, n: int = 4, amount: float = 0.3, seed: int | None = None,
            temperature: float = 0.0) -> list[Melody]:
    """`n` variations of the clip (as `Engine.similar`, window by window; one window draws as it does)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 4096:
        raise ValueError(f"n={n!r}: send a whole number from 1 to 4096")
    zs = variation_latents(encode(engine, clip), int(n), amount, np.random.default_rng(seed), engine.draw_prior)
    return decode_many(engine, zs, [clip] * int(n), temperature=temperature, seed=seed)


def shift(engine: Engine, clip: Melody, attribute: str, amount: float = 1.0, temperature: float = 0.0,
          seed: int | None = None) -> Melody:
    """Every window moved along an attribute vector (as `Engine.shift`)."""
    vector = engine.attribute_vector(attribute)
    amount = lat.check_position(amount, "amount", -10.0, 10.0)
    return decode(engine, encode(engine, clip) + np.float32(amount) * vector, clip, temperature=temperature,
                  seed=seed)


def check_bars(clip: Melody, first_bar: int, last_bar: int) -> int:
    """The clip's bar count, after checking bars first..last (1-based, inclusive) can be regenerated."""
    n_bars = -(-clip.n_steps // clip.meter.steps_per_bar)
    for name, value in (("first bar", first_bar), ("last bar", last_bar)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= n_bars:
            raise ValueError(f"{name} {value!r} does not exist: this clip has bars 1..{n_bars}")
    if first_bar > last_bar:
        raise ValueError(f"bars {first_bar}-{last_bar} run backwards: send first <= last, e.g. 1-{n_bars - 1}")
    if first_bar == 1 and last_bar == n_bars:
        raise ValueError(f"bars 1-{n_bars} are the whole clip: keep at least one bar (or use sample)")
    return n_bars


def infill_windows(first_bar: int, last_bar: int, window_bars: int) -> list[tuple[int, int, int]]:
    """(window's first bar, first, last bar to regenerate) in clip bars, each window holding a bar to keep.

    A window of the gap's own (mapped) windows is used where it keeps a bar; a window lying wholly
    inside the gap moves to keep one bar next to it (one already kept or regenerated), working from
    the left, or from the right when the gap starts at bar 1.
    """
    plan: list[tuple[int, int, int]] = []
    if first_bar > 1:
        bar = first_bar
        while bar <= last_bar:
            start = (bar - 1) // window_bars * window_bars + 1
            if start == bar and last_bar >= start + window_bars - 1:
                start = bar - 1
            end = min(last_bar, start + window_bars - 1)
            plan.append((start, bar, end))
            bar = end + 1
    else:
        bar = last_bar
        while bar >= 1:
            end = -(-bar // window_bars) * window_bars
            if end == bar:
                end = bar + 1
            start = max(1, end - window_bars + 1)
            low = max(1, start)
            plan.append((start, low, bar))
            bar = low - 1
    return plan


def infill(engine: Engine, clip: Melody, first_bar: int, last_bar: int, seed: int | None = None,
           temperature: float = 0.5) -> Melody:
    """Regenerate clip bars first..last (1-based, inclusive), keeping every other step exactly.

    Runs `Engine.infill` on the windows of `infill_windows`, one after another, each seeing the bars
    kept or already regenerated beside its gap; the gap's steps are spliced back by the tie rule.
    """
    check_clip(engine, clip)
    n_bars = check_bars(clip, first_bar, last_bar)
    per_bar = clip.meter.steps_per_bar
    window_bars = engine.steps // per_bar
    held = layout(clip, per_bar).held  # the pitch held into each bar, for ties at the gap's edges
    events = _padded(clip.events, (n_bars + 2 * window_bars) * per_bar)
    chords = None if engine.progression is None else engine.chord_steps(len(events) + engine.steps)
    for index, (start, low, high) in enumerate(infill_windows(first_bar, last_bar, window_bars)):
        begin = (start - 1) * per_bar
        window = events[begin:begin + engine.steps].copy()
        sounding = _sounding(events[:begin])
        if sounding is not None and window[0] == NO_EVENT:
            window[0] = sounding
        melody = replace(clip, events=clip.codec.canonical(window))
        piece_seed = None if seed is None else (int(seed) + index) % 2**63
        player = engine if chords is None else engine.with_chords(chords[begin:begin + engine.steps])
        result = player.infill(melody, low - start + 1, high - start + 1, seed=piece_seed,
                               temperature=temperature).events
        gap = slice((low - start) * per_bar, (high - start + 1) * per_bar)
        at = (low - 1) * per_bar
        events[at:at + gap.stop - gap.start] = result[gap]
        if low == start:  # the gap opens the window: join it to the line before by the tie rule
            events[at] = joined_token(_sounding(events[:at]), int(result[gap.start]), held[low - 2] if low > 1
                                      else None)
    return as_clip_melody(events[:clip.n_steps], clip)


def window_melodies(engine: Engine, clip: Melody) -> list[Melody]:
    """The clip's windows as the model hears them (for scoring a clip window by window)."""
    check_clip(engine, clip)
    return [replace(clip, events=row) for row in split_windows(clip, engine.steps)]


def novelty(engine: Engine, clip: Melody) -> np.ndarray:
    """Each window's `Engine.novelty`, a chord model's window k scored under its own part of the progression."""
    windows = window_melodies(engine, clip)
    heard = window_chords(engine, len(windows))
    if heard is None:
        return engine.novelty(windows)
    return np.array([engine.with_chords(row).novelty([window])[0] for window, row in zip(windows, heard, strict=True)])
