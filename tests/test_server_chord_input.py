"""Chords held on a MIDI channel become a client's progression (/seqvae/chords_from_midi), through a real JACK port
(jackd's dummy backend); a melody played at once on another channel keeps its own notes."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest
from server_support import OscClient, jack_keyboard, notes_of, running_server

PORT = "seqvae-chords-test"
NOTE_ON, NOTE_OFF = 0x90, 0x80


@pytest.fixture
def live(jack_server, tiny_chord_engine, tmp_path, monkeypatch):
    """A chord model's server on MIDI in, a client and a JACK keyboard plugged into it."""
    monkeypatch.setenv("MIDO_BACKEND", "mido.backends.rtmidi/UNIX_JACK")
    with running_server(tiny_chord_engine, tmp_path, midi_in=PORT, bpm=240.0) as srv:
        keys = jack_keyboard(PORT)
        with contextlib.closing(OscClient(srv.address[1])) as client:
            try:
                yield srv, client, keys
            finally:
                keys.close_port()


def _play(srv, keys, start: float, notes: list[tuple[int, int, float, float]]) -> None:
    """Send (channel, pitch, on beat, off beat) notes on the server clock's beats from `start`."""
    clock = srv.player.clock
    events = sorted([(on, NOTE_ON, ch, p) for ch, p, on, _ in notes]
                    + [(off, NOTE_OFF, ch, p) for ch, p, _, off in notes])
    for beat, kind, channel, pitch in events:
        target = clock.time_at(start + beat)
        while time.perf_counter() < target:
            time.sleep(0.0005)
        keys.send_message([kind | (channel - 1), pitch, 90 if kind == NOTE_ON else 0])


def test_held_chords_become_the_progression_and_the_melody_keeps_its_channel(live, tiny_chord_engine):
    srv, client, keys = live
    address, (channel, bars, start) = client.one("/seqvae/chords_from_midi", 2, 2)
    assert (address, channel, bars) == ("/seqvae/chords_recording", 2, 2)
    address, (slot, _, melody_start) = client.one("/seqvae/record", "tune", 2)
    assert (address, slot, melody_start) == ("/seqvae/recording", "tune", start)
    chords = [(2, p, 0.0, 3.9) for p in (45, 57, 60, 64)]  # Am with its root doubled below
    chords += [(2, p, 4.15, 7.8) for p in (53, 57, 60, 64)]  # Fmaj7, struck a little late
    melody = [(1, 72, 0.0, 1.0), (1, 76, 2.0, 3.0), (1, 77, 5.0, 6.0)]  # gaps the chords would fill on its channel
    _play(srv, keys, start, chords + melody)
    assert client.receive(15) == ("/seqvae/chords", ["Am:4", "F:4"])
    notes = notes_of(client.receive(15))  # the melody take, encoded under the chords just played
    assert [(p, s, d) for p, s, d, _ in notes] == [(72, 0.0, 1.0), (76, 2.0, 1.0), (77, 5.0, 1.0)]
    sampled = notes_of(client.one("/seqvae/sample", "s", 0.0, 4))
    view = tiny_chord_engine.with_chords("Am:4 F:4")
    melody = view.decode(view.draw_prior(1, np.random.default_rng(4)))[0]
    assert sampled == [(int(p), float(s), float(d), int(v)) for p, s, d, v in melody.notes_in_beats()]


def test_a_take_without_chords_is_an_error_and_the_progression_stays(live):
    srv, client, keys = live
    assert client.one("/seqvae/chords", "C") == ("/seqvae/chords", ["C"])
    _, (_, _, start) = client.one("/seqvae/chords_from_midi", 3, 1)
    _play(srv, keys, start, [(3, 60, 0.0, 3.5), (1, 64, 0.0, 3.5)])  # one note on the chord channel, one elsewhere
    error = client.receive(15)
    assert error[0] == "/seqvae/error" and error[1][0] == "/seqvae/chords_from_midi"
    assert "no chord was held" in error[1][1] and "channel 3" in error[1][1]
    assert client.one("/seqvae/chords_from_midi", 17)[0] == "/seqvae/error"
    assert client.one("/seqvae/chords_from_midi", 3, 1)[0] == "/seqvae/chords_recording"
    assert client.one("/seqvae/record_cancel") == ("/seqvae/record_cancelled", [])  # drops the chord take too
    assert client.quiet(2.5)


def test_chords_from_midi_needs_midi_in_and_a_chord_model(tiny_engine, tiny_chord_engine, tmp_path):
    for engine, words in ((tiny_chord_engine, "--midi-in"), (tiny_engine, "--midi-in")):
        with running_server(engine, tmp_path) as srv, contextlib.closing(OscClient(srv.address[1])) as client:
            error = client.one("/seqvae/chords_from_midi", 1)
            assert error[0] == "/seqvae/error" and words in error[1][1]
