"""Chords for melodies that have none written: an HMM over (key, chord), decoded with Viterbi.

The design follows note_seq's chord_inference (our own code): the hidden state of each chord span is
a major key (its relative minor included) and one of the 48 triads. A span emits how well its sounding
notes fit the triad (the share of its sounding time, by pitch class, on triad tones); the key makes its
diatonic triads likelier; and between spans the key nearly always stays and the chord often does, so a
passing tone does not flip the harmony. Spans are a half bar in 4/4 and 2/2 (two chords a bar), a whole
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

N_KEYS = 12
N_TRIADS = NUM_CHORD_CLASSES - 1  # the HMM's chords: every class but "no chord"
# Triads a major key (root 0) makes likely: I ii iii IV V vi vii°, and V of the relative minor (III in C:
# E major), which minor-mode folk tunes use at every cadence.
_KEY_TRIADS = ((0, "major"), (2, "minor"), (4, "minor"), (5, "major"), (7, "major"), (9, "minor"),
               (11, "diminished"), (4, "major"))
_BATCH = 4096  # windows decoded at once: a few hundred MB of Viterbi tables at most


@dataclass(frozen=True)
class ChordHmm:
    """The HMM's few parameters; the defaults are note_seq's where it has one."""

    key_change_prob: float = 0.001
    chord_change_prob: float = 0.5
    in_key_prob: float = 0.9  # the share of chord probability on a key's own triads
    note_concentration: float = 20.0  # how sharply emission prefers the triad holding more of the sounding time

    def __post_init__(self) -> None:
        for name in ("key_change_prob", "chord_change_prob", "in_key_prob"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ValueError(f"{name} {value} must lie strictly between 0 and 1")
        if self.note_concentration <= 0:
            raise ValueError(f"note_concentration {self.note_concentration} must be positive")


def span_steps(meter: Meter) -> int:
    """Steps per chord span: half a bar where a bar holds two half notes' worth or more in duple, else a bar."""
    bar = meter.steps_per_bar
    if meter.family == "duple" and bar >= 16 and bar % 2 == 0:
        return bar // 2
    return bar


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
        members = {chord_class(key + root, quality) - 1 for root, quality in _KEY_TRIADS}
        inside = np.zeros(N_TRIADS, dtype=bool)
        inside[list(members)] = True
        logp[key] = np.where(inside, np.log(in_key_prob / inside.sum()),
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


def viterbi_chords(profiles: np.ndarray, hmm: ChordHmm = ChordHmm()) -> np.ndarray:
    """[windows, spans, 12] pitch-class time -> [windows, spans] chord class (NO_CHORD for silent windows).

    Batched over windows. The transition factorises (key stays or jumps anywhere, chord stays or jumps
    anywhere), so each step's max over 576 previous states is four maxima, not 576 x 576 sums; since staying
    is likelier than moving, including the staying state in a "move" maximum never changes the result.
    """
    n, n_spans, _ = profiles.shape
    if n == 0 or n_spans == 0:
        return np.zeros((n, n_spans), dtype=np.uint8)
    totals = profiles.sum(axis=2, keepdims=True)
    share = np.divide(profiles, totals, out=np.zeros_like(profiles), where=totals > 0)
    fit = share @ _triad_matrix().T  # [n, spans, triads] share of sounding time on triad tones
    emission = hmm.note_concentration * fit  # a silent span fits every triad equally (zero): it decides nothing
    prior = _chord_given_key(hmm.in_key_prob)[None]  # [1, keys, triads]
    key_stay, key_move = np.log(1 - hmm.key_change_prob), np.log(hmm.key_change_prob / (N_KEYS - 1))
    chord_stay, chord_move = np.log(1 - hmm.chord_change_prob), np.log(hmm.chord_change_prob / (N_TRIADS - 1))
    delta = prior + emission[:, 0, None, :] - np.log(N_KEYS)
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
        delta = np.take_along_axis(candidates, pick[None], axis=0)[0] + prior + emission[:, t, None, :]
    path = np.zeros((n, n_spans), dtype=np.int64)
    path[:, -1] = delta.reshape(n, n_states).argmax(axis=1)
    for t in range(n_spans - 1, 0, -1):
        path[:, t - 1] = back[rows, t, path[:, t]]
    chords = (path % N_TRIADS + 1).astype(np.uint8)
    chords[totals[:, :, 0].sum(axis=1) == 0] = NO_CHORD
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
