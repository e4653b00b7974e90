"""Infill (engine/infill.py) on tiny untrained models: kept bars sound as before, ties across the gap's
edges in both directions, seeds, pieces, every architecture and 3/4."""

import dataclasses

import numpy as np
import pytest
import torch

from seqvae.codec import NO_EVENT, NOTE_OFF, EventCodec, Melody, Meter, Note
from seqvae.data.synthetic import synthetic_windows
from seqvae.engine import Engine
from seqvae.engine.infill import KEY_WEIGHT, blank_gap, infill_events, keep_sound, kept_key, out_of_key
from seqvae.models import build_model, get_config

CODEC = EventCodec()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _engine(name: str, **changes) -> Engine:
    torch.manual_seed(0)
    config = dataclasses.replace(get_config(name), **changes) if changes else get_config(name)
    return Engine(build_model(config), device="cpu")


@pytest.fixture(scope="module", params=["tiny_lstm", "tiny_hier", "tiny_hier2", "tiny_transformer"])
def engine(request) -> Engine:
    return _engine(request.param)


def _tied(steps: int, per_bar: int) -> list[Melody]:
    """Melodies whose notes cross every bar line (held, as NO_EVENT steps), a rest held across one, and a
    plain synthetic one."""
    meter = Meter(4, 4) if per_bar == 16 else Meter(3, 4)
    across = [Note(60 + 2 * i, start, start + per_bar, 80)
              for i, start in enumerate(range(per_bar // 2, steps, per_bar))]
    lead_in = [Note(72, 0, per_bar // 2, 80)] + across
    rest_across = [Note(67, 0, 4, 80), Note(65, per_bar + 4, per_bar + 8, 80)]  # silence from step 4 to bar 2
    rows = [CODEC.notes_to_events(notes, steps) for notes in (across, lead_in, rest_across)]
    rows.append(synthetic_windows(1, steps, 5)[0])
    return [Melody(row, meter=meter, codec=CODEC) for row in rows]


def _sound(events: np.ndarray) -> np.ndarray:
    return CODEC.sounding_pitches(events)


def test_sounding_pitches_reads_held_notes_and_rests():
    events = np.array([CODEC.pitch_to_class(60), NO_EVENT, NOTE_OFF, NO_EVENT, CODEC.pitch_to_class(62), NO_EVENT])
    np.testing.assert_array_equal(CODEC.sounding_pitches(events), [60, 60, -1, -1, 62, 62])


def test_keep_sound_rearticulates_a_note_held_into_the_kept_bar():
    c, e, g = (CODEC.pitch_to_class(p) for p in (60, 64, 67))
    original = np.zeros(8, np.int64)
    original[[0, 2]] = [c, e]  # e from step 2, held over the gap's end (step 4) to the end
    gap_ends_on_g = np.zeros(8, np.int64)
    gap_ends_on_g[[0, 3]] = [c, g]
    out = keep_sound(original, gap_ends_on_g, 0, 4, CODEC)
    assert out[4] == e and np.array_equal(_sound(out)[4:], _sound(original)[4:])
    gap_ends_on_e = np.zeros(8, np.int64)
    gap_ends_on_e[1] = e
    tied = keep_sound(original, gap_ends_on_e, 0, 4, CODEC)
    assert tied[4] == NO_EVENT and np.array_equal(_sound(tied)[4:], _sound(original)[4:])  # same pitch: still tied
    gap_ends_silent = np.zeros(8, np.int64)
    gap_ends_silent[[0, 2]] = [g, NOTE_OFF]
    assert keep_sound(original, gap_ends_silent, 0, 4, CODEC)[4] == e


def test_keep_sound_ends_the_gaps_note_where_the_kept_bar_was_silent():
    c, g = CODEC.pitch_to_class(60), CODEC.pitch_to_class(67)
    original = np.zeros(8, np.int64)
    original[[0, 1, 6]] = [c, NOTE_OFF, g]  # silence from step 1 over the gap's end (step 4)
    new = np.zeros(8, np.int64)
    new[3] = g
    out = keep_sound(original, new, 2, 4, CODEC)
    assert out[4] == NOTE_OFF and np.array_equal(_sound(out)[4:], _sound(original)[4:])
    np.testing.assert_array_equal(out[:2], original[:2])


def test_blank_gap_is_a_rest_and_the_kept_bars_sound_as_before():
    melody = _tied(32, 16)[1]
    for start, end in ((0, 16), (16, 32)):
        blank = blank_gap(melody.events, start, end, CODEC)
        assert np.all(_sound(blank)[start:end] == -1)
        keep = np.ones(32, bool)
        keep[start:end] = False
        np.testing.assert_array_equal(_sound(blank)[keep], _sound(melody.events)[keep])


def _kept(n_steps: int, start: int, end: int) -> np.ndarray:
    keep = np.ones(n_steps, bool)
    keep[start:end] = False
    return keep


def test_infill_keeps_the_sound_of_the_kept_bars(engine):
    per_bar = engine.meter.steps_per_bar
    changed = 0
    for melody in _tied(engine.steps, per_bar):
        for first, last in ((1, 1), (2, 2)):
            start, end = engine.bar_span(melody, first, last)
            keep = _kept(engine.steps, start, end)
            for seed, temperature in ((0, 0.5), (1, 0.5), (2, 0.0)):
                out = engine.infill(melody, first, last, seed=seed, temperature=temperature)
                assert out.meter == melody.meter and out.codec == melody.codec
                np.testing.assert_array_equal(_sound(out.events)[keep], _sound(melody.events)[keep])
                np.testing.assert_array_equal(out.events[:start], melody.events[:start])  # before the gap: tokens too
                assert np.array_equal(out.events, engine.infill(melody, first, last, seed=seed,
                                                                temperature=temperature).events)
                changed += not np.array_equal(_sound(out.events)[~keep], _sound(melody.events)[~keep])
    assert changed >= 12  # of 24: the gap is regenerated, not handed back


def test_infill_rearticulates_when_the_gap_ends_on_another_pitch():
    engine = _engine("tiny_lstm")
    melody = _tied(32, 16)[0]  # a note from step 8 held across the bar line into bar 2
    results = [engine.infill(melody, 1, 1, seed=seed).events for seed in range(6)]
    held = _sound(melody.events)[16]
    rearticulated = [r for r in results if _sound(r)[15] != held]
    assert rearticulated, "an untrained model should end the new bar on another pitch at least once"
    for r in rearticulated:
        assert r[16] == CODEC.pitch_to_class(int(held))


def test_seeds_differ_and_pieces_do_not_change_the_result():
    engine = _engine("tiny_lstm")
    melody = _tied(32, 16)[3]
    outs = {seed: engine.infill(melody, 2, 2, seed=seed).events for seed in range(4)}
    assert len({o.tobytes() for o in outs.values()}) > 1
    rows: list[int] = []
    decode = engine.model.decode

    def spy(z, *args, **kwargs):
        rows.append(len(z))
        return decode(z, *args, **kwargs)

    engine.model.decode = spy  # instance attribute shadows the method
    engine.piece_rows = 4
    try:
        for temperature in (0.5, 0.0):
            rows.clear()
            sliced = engine.infill(melody, 2, 2, seed=0, temperature=temperature).events
            assert len(rows) > 1 and max(rows) <= 4  # the model is taken a piece at a time
            engine.piece_rows = None
            whole = engine.infill(melody, 2, 2, seed=0, temperature=temperature).events
            engine.piece_rows = 4
            np.testing.assert_array_equal(sliced, whole)
    finally:
        del engine.model.decode
        engine.piece_rows = None
    np.testing.assert_array_equal(outs[0], engine.infill(melody, 2, 2, seed=0).events)


def test_triple_meter_infill_keeps_its_bars():
    triple = _engine("tiny_lstm", steps=24, family="triple")
    assert triple.meter == Meter(3, 4)
    for melody in _tied(24, 12):
        for first in (1, 2):
            start, end = triple.bar_span(melody, first, first)
            assert (start, end) == ((first - 1) * 12, first * 12)
            out = triple.infill(melody, first, first, seed=3)
            assert out.n_steps == 24 and out.meter == Meter(3, 4)
            keep = _kept(24, start, end)
            np.testing.assert_array_equal(_sound(out.events)[keep], _sound(melody.events)[keep])


def test_four_bar_gap_in_the_middle_keeps_both_sides():
    engine = _engine("tiny_lstm", steps=64)
    for melody in _tied(64, 16):
        out = engine.infill(melody, 2, 3, seed=1)
        keep = _kept(64, 16, 48)
        np.testing.assert_array_equal(_sound(out.events)[keep], _sound(melody.events)[keep])


@pytest.mark.parametrize("bars, message", [((0, 1), "first bar 0 does not exist"), ((2, 1), "backwards"),
                                           ((1, 2), "whole melody"), ((1, 3), "last bar 3 does not exist"),
                                           ((True, 1), "first bar True")])
def test_bad_bars_get_clear_errors(bars, message):
    engine = _engine("tiny_lstm")
    with pytest.raises(ValueError, match=message):
        engine.infill(_tied(32, 16)[0], *bars)


def test_bad_search_arguments_get_clear_errors():
    engine = _engine("tiny_lstm")
    events = _tied(32, 16)[0].events
    with pytest.raises(ValueError, match="explore=0"):
        infill_events(engine, events, 0, 16, 0.5, 0, explore=0)
    with pytest.raises(ValueError, match="refine=2.5"):
        infill_events(engine, events, 0, 16, 0.5, 0, refine=2.5)
    with pytest.raises(ValueError, match="leave some steps kept"):
        infill_events(engine, events, 0, 32, 0.5, 0)
    with pytest.raises(ValueError, match="temperature"):
        engine.infill(_tied(32, 16)[0], 1, 1, temperature=-1)


def _c_major_then(gap_pitches: list[int]) -> np.ndarray:
    """Bar 1 a C major scale run (the kept bar), bar 2 the given pitches, one per four steps."""
    notes = [Note(p, 2 * i, 2 * i + 2, 80) for i, p in enumerate((60, 62, 64, 65, 67, 69, 71, 72))]
    notes += [Note(p, 16 + 4 * i, 20 + 4 * i, 80) for i, p in enumerate(gap_pitches)]
    return CODEC.notes_to_events(notes, 32)


def test_out_of_key_counts_the_gaps_notes_outside_the_kept_bars_key():
    keep = _kept(32, 16, 32)
    key = kept_key(_c_major_then([]), keep, CODEC)
    np.testing.assert_array_equal(np.flatnonzero(key), [0, 2, 4, 5, 7, 9, 11])
    rows = np.stack([_c_major_then(g) for g in ([60, 64, 67, 72], [61, 64, 66, 70], [])])
    np.testing.assert_array_equal(out_of_key(rows, 16, 32, key, CODEC), [0, 3, 0])
    only_gap = CODEC.notes_to_events([Note(61, 16, 20, 80)], 32)
    assert kept_key(only_gap, keep, CODEC) is None  # no kept note: no key to keep


def _two_candidates():
    """A decode_scored that returns, row by row, a gap out of C major whose kept steps are a little likelier and
    an in-key gap: the key prior decides between them."""
    outside, inside = _c_major_then([61, 63, 66, 68]), _c_major_then([60, 64, 67, 72])

    def decode_scored(z, temperature=0.0, seed=None, forced=None, mask=None):
        tokens = np.stack([outside if i % 2 == 0 else inside for i in range(len(z))])
        log_probs = np.full(tokens.shape, -1.0, np.float32)
        log_probs[::2, 0] += KEY_WEIGHT  # 4 notes out of key cost 4 * KEY_WEIGHT; this buys back one
        return tokens, log_probs

    return decode_scored


def test_the_key_prior_prefers_the_gap_in_the_kept_bars_key(monkeypatch):
    engine = _engine("tiny_lstm")
    monkeypatch.setitem(vars(engine), "decode_scored", _two_candidates())
    melody = Melody(_c_major_then([60, 62, 64, 65]), codec=CODEC)
    assert np.array_equal(engine.infill(melody, 2, 2, seed=0).events, _c_major_then([60, 64, 67, 72]))


def test_a_users_key_turns_the_key_prior_off(monkeypatch):
    view = _engine("tiny_lstm").constrained("A harmonic minor")
    monkeypatch.setitem(vars(view), "decode_scored", _two_candidates())
    melody = Melody(_c_major_then([60, 62, 64, 65]), codec=CODEC)
    assert np.array_equal(view.infill(melody, 2, 2, seed=0).events, _c_major_then([61, 63, 66, 68]))
