"""Chords for melodies that have none written: an HMM over (key, chord), decoded with Viterbi.

The design follows note_seq's chord_inference (our own code): the hidden state of each chord span is
one of 24 keys (major and minor) and one of the 48 triads. A span emits how well its sounding notes fit
the triad and the key's scale (the share of its sounding time, by pitch class, on triad tones and on
scale tones: the scale is what tells A minor from A major and C major over "A G# A B"); the key makes its
own triads likelier, tonic and dominant most; and between spans the key nearly always stays and the chord
often does, so a passing tone does not flip the harmony. Spans are a half bar in 4/4 and 2/2 (two chords a bar), a whole
bar in 2/4 and in triple meters (3/4, 6/8: one a bar).

A span where nothing sounds (a rest) says nothing about the harmony: it keeps the chord before it (a
window that starts with rests takes the first chord heard); a window with no notes at all gets no chord.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqvae.codec.chords import NO_CHORD, NUM_CHORD_CLASSES, chord_class, triad_pitch_classes
from seqvae.codec.events import EventCodec
from seqvae.codec.melody import Melody
from seqvae.codec.meter import Meter
from seqvae.codec.scales import MODES

N_KEYS = 24  # 12 major keys, then 12 minor keys (tonic C first)
MINOR_WITH_RAISED_DEGREES = tuple(sorted(set(MODES["minor"]) | {9, 11}))  # a minor key's melody raises 6 and 7
N_TRIADS = NUM_CHORD_CLASSES - 1  # the HMM's chords: every class but "no chord"
# The triads a key (tonic 0) uses, weighted as folk and song harmony leans: the tonic and dominant most, then the
# subdominant, the rest less. A minor key has both its harmonic V (E in A minor) and its natural v and VII.
_MAJOR_KEY_TRIADS = {(0, "major"): 3.0, (2, "minor"): 1.0, (4, "minor"): 0.5, (5, "major"): 2.0, (7, "major"): 3.0,
                     (9, "minor"): 1.5, (11, "diminished"): 0.25, (2, "major"): 0.5, (4, "major"): 0.5}
_MINOR_KEY_TRIADS = {(0, "minor"): 3.0, (2, "diminished"): 0.25, (3, "major"): 1.5, (5, "minor"): 2.0,
                     (7, "major"): 2.5, (7, "minor"): 1.0, (8, "major"): 1.0, (10, "major"): 1.5}
_BATCH = 1024  # windows decoded at once: Viterbi tables stay near 200 MB even for 16-bar windows


@dataclass(frozen=True)
class ChordHmm:
    """The HMM's few parameters; the defaults are note_seq's where it has one."""

    key_change_prob: float = 0.001
    chord_change_prob: float = 0.5
    in_key_prob: float = 0.9  # the share of chord probability on a key's own triads
    note_concentration: float = 20.0  # how sharply emission prefers the triad holding more of the sounding time
    scale_concentration: float = 10.0  # how sharply a span prefers the keys whose scale holds its notes

    def __post_init__(self) -> None:
        for name in ("key_change_prob", "chord_change_prob", "in_key_prob"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ValueError(f"{name} {value} must lie strictly between 0 and 1")
        for name, states in (("key_change_prob", N_KEYS), ("chord_change_prob", N_TRIADS)):
            if getattr(self, name) > (states - 1) / states:  # staying must stay likelier than any one move
                raise ValueError(f"{name} {getattr(self, name)} is above {(states - 1) / states:.3f}, where moving to "
                                 "one other state would be likelier than staying: send a smaller probability")
        if self.note_concentration <= 0 or self.scale_concentration < 0:
            raise ValueError(f"note_concentration {self.note_concentration} must be positive and "
                             f"scale_concentration {self.scale_concentration} not negative")


def span_steps(meter: Meter) -> int:
    """Steps per chord span: half a bar where a bar holds two half notes' worth or more in duple, else a bar."""
    bar = meter.steps_per_bar
    if meter.family == "duple" and bar >= 16 and bar % 2 == 0:
        return bar // 2
    return bar


def _scale_matrix() -> np.ndarray:
    """[key, pitch class] 1 on the key's scale: major, or minor with both its sixth and seventh degrees."""
    out = np.zeros((N_KEYS, 12))
    for key in range(N_KEYS):
        degrees = MODES["major"] if key < 12 else MINOR_WITH_RAISED_DEGREES
        out[key, [(key + d) % 12 for d in degrees]] = 1.0
    return out


def _triad_matrix() -> np.ndarray:
    """[triad, pitch class] 1 on the triad's tones."""
    out = np.zeros((N_TRIADS, 12))
    for cls in range(1, NUM_CHORD_CLASSES):
        out[cls - 1, list(triad_pitch_classes(cls))] = 1.0
    return out


def _chord_given_key(in_key_prob: float) -> np.ndarray:
    """[key, triad] log P(chord | key)."""
    logp = np.zeros((N_KEYS, N_TRIADS))
    for key in range(N_KEYS):
        weights = np.zeros(N_TRIADS)
        triads = _MAJOR_KEY_TRIADS if key < 12 else _MINOR_KEY_TRIADS
        for (root, quality), weight in triads.items():
            weights[chord_class(key % 12 + root, quality) - 1] = weight
        inside = weights > 0
        logp[key] = np.where(inside, np.log(in_key_prob * weights / weights.sum() + 1e-300),
                             np.log((1 - in_key_prob) / (~inside).sum()))
    return logp


def span_pitch_classes(sounding: np.ndarray, span: int) -> np.ndarray:
    """[windows, spans, 12] steps each pitch class sounds in each span, from sounding pitches (-1 silent)."""
    n, steps = sounding.shape
    n_spans = -(-steps // span)
    padded = np.full((n, n_spans * span), -1, dtype=np.int64)
    padded[:, :steps] = sounding
    spans = padded.reshape(n, n_spans, span)
    out = np.zeros((n, n_spans, 12))
    for pc in range(12):
        out[:, :, pc] = ((spans >= 0) & (spans % 12 == pc)).sum(axis=2)
    return out


def state_scores(profiles: np.ndarray, hmm: ChordHmm = ChordHmm()) -> np.ndarray:
    """[windows, spans, 12] pitch-class time -> [windows, spans, keys, triads] log score of each state in each span:
    how the notes fit the triad and the key's scale, plus log P(chord | key). A silent span fits every triad and
    scale equally (zero), so it decides nothing."""
    totals = profiles.sum(axis=2, keepdims=True)
    share = np.divide(profiles, totals, out=np.zeros_like(profiles, dtype=float), where=totals > 0)
    fit = share @ _triad_matrix().T  # [n, spans, triads] share of sounding time on triad tones
    in_scale = share @ _scale_matrix().T  # [n, spans, keys] share of sounding time on the key's scale
    emission = hmm.note_concentration * fit[:, :, None, :] + hmm.scale_concentration * in_scale[:, :, :, None]
    return emission + _chord_given_key(hmm.in_key_prob)[None, None]


def viterbi_chords(profiles: np.ndarray, hmm: ChordHmm = ChordHmm()) -> np.ndarray:
    """[windows, spans, 12] pitch-class time -> [windows, spans] chord class (NO_CHORD for silent windows).

    Batched over windows. The transition factorises (key stays or jumps anywhere, chord stays or jumps
    anywhere), so each step's max over 1152 previous states is four maxima, not 1152 x 1152 sums; since staying
    is likelier than moving, including the staying state in a "move" maximum never changes the result.
    """
    n, n_spans, _ = profiles.shape
    if n == 0 or n_spans == 0:
        return np.zeros((n, n_spans), dtype=np.uint8)
    scores = state_scores(profiles, hmm)
    key_stay, key_move = np.log(1 - hmm.key_change_prob), np.log(hmm.key_change_prob / (N_KEYS - 1))
    chord_stay, chord_move = np.log(1 - hmm.chord_change_prob), np.log(hmm.chord_change_prob / (N_TRIADS - 1))
    delta = scores[:, 0] - np.log(N_KEYS)
    n_states = N_KEYS * N_TRIADS
    back = np.zeros((n, n_spans, n_states), dtype=np.int32)
    state = np.arange(n_states).reshape(N_KEYS, N_TRIADS)
    rows = np.arange(n)
    for t in range(1, n_spans):
        flat = delta.reshape(n, n_states)
        same = delta + key_stay + chord_stay
        best_chord = delta.argmax(axis=2)  # per key: the best chord to move from
        other_chord = delta.max(axis=2, keepdims=True) + key_stay + chord_move
        best_key = delta.argmax(axis=1)  # per chord: the best key to move from
        other_key = delta.max(axis=1, keepdims=True) + key_move + chord_stay
        best_any = flat.argmax(axis=1)
        anything = flat[rows, best_any][:, None, None] + key_move + chord_move
        candidates = np.stack(np.broadcast_arrays(same, other_chord, other_key, anything))  # [4, n, keys, triads]
        sources = np.stack(np.broadcast_arrays(
            np.broadcast_to(state, delta.shape),
            best_chord[:, :, None] + np.arange(N_KEYS)[None, :, None] * N_TRIADS,
            best_key[:, None, :] * N_TRIADS + np.arange(N_TRIADS)[None, None, :],
            np.broadcast_to(best_any[:, None, None], delta.shape),
        ))
        pick = candidates.argmax(axis=0)
        back[:, t] = np.take_along_axis(sources, pick[None], axis=0)[0].reshape(n, n_states)
        delta = np.take_along_axis(candidates, pick[None], axis=0)[0] + scores[:, t]
    path = np.zeros((n, n_spans), dtype=np.int64)
    path[:, -1] = delta.reshape(n, n_states).argmax(axis=1)
    for t in range(n_spans - 1, 0, -1):
        path[:, t - 1] = back[rows, t, path[:, t]]
    chords = (path % N_TRIADS + 1).astype(np.uint8)
    chords[profiles.sum(axis=(1, 2)) == 0] = NO_CHORD
    return chords


def infer_window_chords(
    windows: np.ndarray, meter: Meter, codec: EventCodec | None = None, hmm: ChordHmm = ChordHmm(),
) -> np.ndarray:
    """[windows, steps] events of one meter -> uint8 [windows, steps] chord class per step."""
    codec = codec or EventCodec()
    arr = np.asarray(windows)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise ValueError(f"windows must be [windows, steps] events, got shape {arr.shape}")
    sounding = np.stack([codec.sounding_pitches(row) for row in arr]) if len(arr) else np.zeros(arr.shape, int)
    span = span_steps(meter)
    profiles = span_pitch_classes(sounding, span)
    per_span = np.concatenate([viterbi_chords(profiles[i : i + _BATCH], hmm) for i in range(0, len(profiles), _BATCH)]
                              or [np.zeros((0, profiles.shape[1]), dtype=np.uint8)])
    return np.repeat(per_span, span, axis=1)[:, : arr.shape[1]].astype(np.uint8)


def infer_chords(melody: Melody, hmm: ChordHmm = ChordHmm()) -> np.ndarray:
    """A melody -> uint8 chord class per step, spans on its own meter's bar lines."""
    return infer_window_chords(melody.events[None], melody.meter, melody.codec, hmm)[0]


def infer_corpus_chords(
    windows: np.ndarray, meters: np.ndarray, codec: EventCodec | None = None, hmm: ChordHmm = ChordHmm(),
) -> np.ndarray:
    """A split's windows and their [windows, 2] meters -> uint8 [windows, steps] chords, batched per meter."""
    out = np.zeros(np.asarray(windows).shape, dtype=np.uint8)
    if len(windows) == 0:
        return out
    pairs = np.asarray(meters).reshape(-1, 2)
    for numerator, denominator in np.unique(pairs, axis=0).tolist():
        rows = np.flatnonzero((pairs[:, 0] == numerator) & (pairs[:, 1] == denominator))
        out[rows] = infer_window_chords(windows[rows], Meter(numerator, denominator), codec, hmm)
    return out
