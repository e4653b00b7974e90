"""Chords inferred from melodies: arpeggios of known progressions come back, rests keep the chord."""

import numpy as np
import pytest

from seqvae.codec.chords import NO_CHORD, chord_name, parse_chord, parse_progression, triad_pitch_classes
from seqvae.codec.events import EventCodec, Note
from seqvae.codec.melody import Melody
from seqvae.codec.meter import Meter
from seqvae.data.chord_inference import (
    N_KEYS,
    N_TRIADS,
    ChordHmm,
    infer_chords,
    infer_corpus_chords,
    infer_window_chords,
    span_steps,
    state_scores,
    viterbi_chords,
)


def arpeggio(progression: str, meter: Meter, steps: int, base: int = 60) -> tuple[Melody, np.ndarray]:
    """Eighth notes climbing each chord's triad: a melody whose chords nobody could doubt."""
    chords = parse_progression(progression, meter, steps)
    notes = [Note(base + triad_pitch_classes(chords[s])[(s // 2) % 3], s, s + 2) for s in range(0, steps, 2)]
    return Melody.from_notes(notes, steps, meter=meter), chords


@pytest.mark.parametrize(("progression", "meter", "steps"), [
    ("C G Am F", Meter(4, 4), 64),
    ("Am:2 F:2 C:2 G:2", Meter(4, 4), 32),
    ("D G A D", Meter(3, 4), 48),
    ("Em D", Meter(6, 8), 24),
    ("Bdim:2 C:2 Caug:2 F#m:2", Meter(4, 4), 32),
    ("Bb Eb F Bb", Meter(2, 4), 32),
    ("Am Dm E Am", Meter(4, 4), 64),
    ("Gm:2 Cm:2 D:2 Gm:2 Eb:2 F:2 D:2 Gm:2", Meter(4, 4), 64),
])
def test_arpeggios_give_back_their_progression(progression, meter, steps):
    melody, truth = arpeggio(progression, meter, steps)
    got = infer_chords(melody)
    assert got.dtype == np.uint8 and got.shape == (steps,)
    assert [chord_name(c) for c in got] == [chord_name(c) for c in truth]


def test_spans_are_half_bars_in_four_four_and_bars_in_triple():
    assert span_steps(Meter(4, 4)) == 8 and span_steps(Meter(2, 2)) == 8
    assert span_steps(Meter(2, 4)) == 8 and span_steps(Meter(3, 4)) == 12 and span_steps(Meter(6, 8)) == 12


def test_a_passing_tone_does_not_flip_the_chord():
    codec = EventCodec()
    # bar 1 C E G C over C major, bar 2 the same with a passing D: still C, not G or Dm
    notes = [Note(p, 4 * i, 4 * i + 4) for i, p in enumerate([60, 64, 67, 72, 60, 62, 64, 67])]
    chords = infer_chords(Melody(codec.notes_to_events(notes, 32)))
    assert set(chords.tolist()) == {parse_chord("C")}


def test_rests_keep_the_chord_before_and_take_the_first_one_heard():
    codec = EventCodec()
    g_major = [Note(p, 8 + 2 * i, 10 + 2 * i) for i, p in enumerate([67, 71, 74, 71])]  # span 2 only
    events = codec.notes_to_events(g_major, 32)  # spans 1, 3 and 4 are rests
    chords = infer_chords(Melody(events))
    assert set(chords.tolist()) == {parse_chord("G")}
    silent = infer_window_chords(np.zeros((2, 32), dtype=np.int64), Meter(4, 4))
    assert (silent == NO_CHORD).all()


def test_corpus_chords_batch_per_meter_and_match_single_windows():
    duple, duple_truth = arpeggio("F C", Meter(4, 4), 32)
    triple, _ = arpeggio("G D", Meter(3, 4), 24)
    windows = np.zeros((3, 32), dtype=np.int8)
    windows[0] = duple.events
    windows[1, :24] = triple.events  # a triple window padded here only to share the array's width
    windows[2] = duple.events
    meters = np.array([[4, 4], [3, 4], [4, 4]], dtype=np.int8)
    got = infer_corpus_chords(windows, meters)
    assert got.dtype == np.uint8 and got.shape == (3, 32)
    assert (got[0] == duple_truth).all() and (got[2] == duple_truth).all()
    assert (got[1] == infer_window_chords(windows[1:2], Meter(3, 4))[0]).all()
    assert infer_corpus_chords(np.zeros((0, 32), dtype=np.int8), np.zeros((0, 2))).shape == (0, 32)


def test_a_minor_tune_with_its_leading_tone_stays_in_a_minor():
    codec = EventCodec()
    # "A G# A B | c B c d | e d# e f | e2 A2": chromatic neighbours, one harmony
    pitches = [69, 68, 69, 71, 72, 71, 72, 74, 76, 75, 76, 77]
    notes = [Note(p, 4 * i, 4 * i + 4) for i, p in enumerate(pitches)] + [Note(76, 48, 56), Note(69, 56, 64)]
    chords = infer_chords(Melody(codec.notes_to_events(notes, 64)))
    assert chords[0] == parse_chord("Am") and chords[-1] == parse_chord("Am")
    assert parse_chord("A") not in set(chords.tolist())


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="chord_change_prob"):
        ChordHmm(chord_change_prob=1.0)
    with pytest.raises(ValueError, match="likelier than staying"):
        ChordHmm(chord_change_prob=0.99)
    with pytest.raises(ValueError, match="windows"):
        infer_window_chords(np.zeros((2, 2, 2)), Meter(4, 4))
    with pytest.raises(ValueError, match="outside"):
        infer_window_chords(np.full((1, 32), 500), Meter(4, 4))


def brute_force_viterbi(profiles: np.ndarray, hmm: ChordHmm) -> np.ndarray:
    """The textbook Viterbi over the full (key, chord) x (key, chord) transition matrix, for one window."""
    keys, chords = np.divmod(np.arange(N_KEYS * N_TRIADS), N_TRIADS)
    same_key, same_chord = keys[:, None] == keys[None], chords[:, None] == chords[None]
    log_key = np.where(same_key, np.log(1 - hmm.key_change_prob), np.log(hmm.key_change_prob / (N_KEYS - 1)))
    log_chord = np.where(same_chord, np.log(1 - hmm.chord_change_prob),
                         np.log(hmm.chord_change_prob / (N_TRIADS - 1)))
    transition = log_key + log_chord  # [from, to]
    scores = state_scores(profiles[None], hmm)[0].reshape(len(profiles), -1)
    delta, back = scores[0], []
    for t in range(1, len(profiles)):
        total = delta[:, None] + transition
        back.append(total.argmax(axis=0))
        delta = total.max(axis=0) + scores[t]
    path = [int(delta.argmax())]
    for pointers in reversed(back):
        path.append(int(pointers[path[-1]]))
    return np.array(path[::-1]) % N_TRIADS + 1


@pytest.mark.parametrize("hmm", [ChordHmm(), ChordHmm(key_change_prob=0.3, chord_change_prob=0.9)])
def test_factorised_viterbi_matches_the_full_transition_matrix(hmm):
    rng = np.random.default_rng(7)
    profiles = rng.random((3, 5, 12)) * (rng.random((3, 5, 12)) < 0.4)
    profiles[0, 2] = 0.0  # a silent span in the middle
    got = viterbi_chords(profiles, hmm)
    for window in range(len(profiles)):
        assert got[window].tolist() == brute_force_viterbi(profiles[window], hmm).tolist()
