"""Engine.constrained: every melody a view generates (windows and whole clips) lies in its key and range."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqvae.codec import Melody, Meter
from seqvae.codec.events import FIRST_NOTE_ON
from seqvae.codec.scales import Key, PitchRange
from seqvae.data.synthetic import synthetic_windows
from seqvae.engine import AttributeVectors, Engine, clips
from seqvae.models import build_model, get_config
from seqvae.models.attribute_vectors import AttributeInfo

pytestmark = pytest.mark.usefixtures("one_torch_thread")
KEY, RANGE = Key.parse("D dorian"), PitchRange(57, 76)


@pytest.fixture(scope="module", params=["tiny_lstm", "tiny_hier", "tiny_transformer"])
def engine(request) -> Engine:
    torch.manual_seed(0)
    eng = Engine(build_model(get_config(request.param)), device="cpu")
    vector = np.random.default_rng(0).standard_normal((1, eng.z_size)).astype(np.float32)
    eng.set_attribute_vectors(AttributeVectors(["density"], vector, [AttributeInfo("density", 0, 1, 0, 1, 2, 2, 3.0)]))
    return eng


def _melodies(engine: Engine, n: int = 4) -> list[Melody]:
    return [Melody(row, meter=Meter(4, 4), codec=engine.codec) for row in synthetic_windows(n, engine.steps, 3)]


def _inside(melodies, tag: str) -> int:
    """Asserts every note-on lies in KEY and RANGE; returns how many there were."""
    count = 0
    for melody in melodies:
        for note in melody.codec.events_to_notes(melody.events):
            assert RANGE.low <= note.pitch <= RANGE.high and KEY.contains(note.pitch), f"{tag}: {note}"
            count += 1
    return count


def _onsets_outside(melodies) -> int:
    return sum(1 for m in melodies for note in m.codec.events_to_notes(m.events)
               if not (RANGE.low <= note.pitch <= RANGE.high and KEY.contains(note.pitch)))


def test_every_operation_of_a_view_stays_in_key_and_range(engine):
    view = engine.constrained("D dorian", "57-76")
    assert view.key == KEY and view.pitch_range == RANGE and view.model is engine.model
    assert engine.key is None, "the engine itself stays unconstrained"
    a, b, c, d = _melodies(engine)
    z = engine.draw_prior(3, np.random.default_rng(1))
    results = {
        "sample": view.sample(8, temperature=1.0, seed=1),
        "decode": view.decode(z, temperature=1.0, seed=2),
        "morph": [view.morph(a, b, 0.4, temperature=1.0)],
        "morph_xy": [view.morph_xy(a, b, c, d, 0.3, 0.6, temperature=1.0)],
        "interpolate": view.interpolate(a, b, 4, temperature=1.0, seed=3),
        "grid": [m for row in view.grid(a, b, c, d, 2, 2, temperature=1.0, seed=4) for m in row],
        "similar": view.similar(a, 4, seed=5, temperature=1.0),
        "shift": [view.shift(a, "density", 1.0, temperature=1.0, seed=6)],
        "reconstruct": [view.reconstruct(a, temperature=1.0, seed=7)],
    }
    notes = {name: _inside(melodies, name) for name, melodies in results.items()}
    assert notes["sample"] > 0 and notes["decode"] > 0
    assert _onsets_outside(engine.sample(8, temperature=1.0, seed=1)) > 0, "unconstrained plays outside"


def test_infill_keeps_the_kept_bars_and_fills_the_gap_in_key(engine):
    view = engine.constrained(KEY, RANGE)
    melody = _melodies(engine, 1)[0]
    out = view.infill(melody, 1, 1, seed=3, temperature=1.0)
    per_bar = melody.meter.steps_per_bar
    assert np.array_equal(out.events[per_bar:], melody.events[per_bar:])
    gap = out.events[:per_bar]
    pitches = [view.codec.class_to_pitch(e) for e in gap if e >= FIRST_NOTE_ON]
    assert all(RANGE.low <= p <= RANGE.high and KEY.contains(p) for p in pitches)


def test_whole_clips_go_through_the_view(engine):
    view = engine.constrained(KEY, RANGE)
    notes = [(60 + (i % 5), i * 0.5, 0.5, 80) for i in range(24)]  # three bars of 4/4: two windows of 2 bars
    clip = engine.clip_from_notes(notes)
    out = [clips.reconstruct(view, clip, temperature=1.0, seed=1),
           *clips.similar(view, clip, 2, seed=2, temperature=1.0),
           clips.morph(view, clip, clip, 0.5, temperature=1.0)]
    _inside(out, "clips")


def test_views_combine_and_clear(engine):
    both = engine.constrained(KEY, None).constrained(None, RANGE)
    assert both.key is None and both.pitch_range == RANGE, "a new constraint replaces the old one"
    off = engine.constrained("D dorian").constrained()
    assert off.key is None and np.array_equal(off.sample(2, seed=1)[0].events, engine.sample(2, seed=1)[0].events)
    personal = engine.with_priors(None, None, "mine").constrained(KEY, RANGE)
    assert personal.model_name == "mine" and personal.base_engine is engine
    _inside(personal.sample(4, temperature=1.0, seed=1), "personal")
    again = engine.constrained(KEY, RANGE).with_priors(None, None, "mine")
    assert again.key == KEY, "a personal view of a constrained engine keeps the key"


def test_impossible_constraints_are_clear_errors(engine):
    with pytest.raises(ValueError, match="no pitch of C pentatonic major lies in range 65-66"):
        engine.constrained("C pentatonic major", "65-66")
    with pytest.raises(ValueError, match="outside the model's pitches"):
        engine.constrained(None, "0-10")
    with pytest.raises(ValueError, match="unknown mode"):
        engine.constrained("D lydian")
