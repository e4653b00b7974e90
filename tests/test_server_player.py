"""Live playback: a steady clock, bar-line takeover when a slot changes, no stuck notes; OSC note
events through the server; and real MIDI through a JACK virtual port when python-rtmidi and
jackd are installed."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter

import pytest
from pythonosc.osc_message import OscMessage
from server_support import OscClient, notes_of, running_server

from seqvae.codec import Melody, Note
from seqvae.server.player import MidiSink, Player

BPM = 400.0  # a 16th every 37.5 ms: two bars of 4/4 in 1.2 s
STEP = 60.0 / (BPM * 4)


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple[float, str, str, int]] = []
        self.lock = threading.Lock()

    def program(self, voice, program):
        return None

    def note_on(self, voice, pitch, velocity, seconds):
        with self.lock:
            self.events.append((time.perf_counter(), "on", voice.slot, pitch))

    def note_off(self, voice, pitch):
        with self.lock:
            self.events.append((time.perf_counter(), "off", voice.slot, pitch))

    def close(self):
        return None


def _melody(pitches_every_4: list[int]) -> Melody:
    """A 2-bar melody with one quarter-length note every 4 steps (the last one held to the end)."""
    notes = [Note(p, 4 * i, 4 * i + 4, 90) for i, p in enumerate(pitches_every_4)]
    return Melody.from_notes(notes, 32)


def _assert_balanced(events):
    ons = Counter((slot, pitch) for _, kind, slot, pitch in events if kind == "on")
    offs = Counter((slot, pitch) for _, kind, slot, pitch in events if kind == "off")
    assert ons == offs, f"stuck notes: {ons - offs}"


def test_clock_is_steady_and_a_one_shot_voice_ends_cleanly():
    sink = RecordingSink()
    ended = threading.Event()
    player = Player([sink], bpm=BPM, on_voice_end=lambda key, slot: ended.set())
    try:
        melody = _melody([60, 62, 64, 65, 67, 69, 71, 72])
        player.play(("c", "a"), "a", melody, loop=False)
        assert ended.wait(5)
        time.sleep(3 * STEP)
    finally:
        player.close()
    ons = [e for e in sink.events if e[1] == "on"]
    assert [e[3] for e in ons] == [60, 62, 64, 65, 67, 69, 71, 72]
    start = ons[0][0]
    drift = [abs((t - start) - i * 4 * STEP) for i, (t, *_rest) in enumerate(ons)]
    assert sorted(drift)[len(drift) // 2] < 0.01 and max(drift) < 0.05, drift  # absolute deadlines: no drift
    _assert_balanced(sink.events)
    assert sink.events[-1][1] == "off" and sink.events[-1][3] == 72


def test_a_changed_slot_takes_over_at_the_next_bar_line_without_stuck_notes():
    sink = RecordingSink()
    player = Player([sink], bpm=BPM)
    try:
        first = _melody([60, 60, 60, 60, 60, 60, 60, 60])
        second = _melody([70, 71, 72, 73, 74, 75, 76, 77])
        player.play(("c", "a"), "a", first, loop=True)
        time.sleep(5.5 * STEP)  # inside the first bar
        assert player.update(("c", "a"), second)
        time.sleep(40 * STEP)
    finally:
        player.close()
    events = sink.events
    _assert_balanced(events)
    ons = [e for e in events if e[1] == "on"]
    assert [e[3] for e in ons[:4]] == [60, 60, 60, 60]  # the rest of bar 1 is the old melody
    # bar 2 begins with the new melody at the same position: its 5th note (step 16)
    assert [e[3] for e in ons[4:8]] == [74, 75, 76, 77]
    switch = ons[4][0]
    assert ons[4][0] - ons[0][0] == pytest.approx(16 * STEP, abs=0.05)
    # at the switch the old note was released before the new one sounded
    before = [e for e in events if e[0] <= switch]
    assert before[-2][1:] == ("off", "a", 60)
    assert not player.playing()


def test_a_second_voice_joins_at_the_next_bar():
    sink = RecordingSink()
    player = Player([sink], bpm=BPM)
    try:
        player.play(("c", "a"), "a", _melody([60] * 8), loop=True)
        time.sleep(2.5 * STEP)
        player.play(("c", "b"), "b", _melody([80] * 8), loop=True)
        time.sleep(20 * STEP)
        assert player.stop([("c", "b")]) == 1
        time.sleep(2 * STEP)
    finally:
        player.close()
    a_times = [t for t, kind, slot, _ in sink.events if kind == "on" and slot == "a"]
    b_first = next(t for t, kind, slot, _ in sink.events if kind == "on" and slot == "b")
    assert b_first - a_times[0] == pytest.approx(16 * STEP, abs=0.05)
    _assert_balanced(sink.events)


def test_play_through_the_server_sends_osc_note_events(tiny_engine, tmp_path):
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(5)
    with running_server(tiny_engine, tmp_path) as srv:
        client = OscClient(srv.address[1], "udp")
        try:
            notes = notes_of(client.one("/seqvae/encode", "a", 3, 60, 0.0, 1.0, 100, 64, 1.0, 1.0, 90,
                                        67, 2.0, 2.0, 80))
            assert client.one("/seqvae/note_target", "127.0.0.1", listener.getsockname()[1])[0] == "/seqvae/note_target"
            assert client.one("/seqvae/tempo", BPM) == ("/seqvae/tempo", [BPM])
            assert client.one("/seqvae/play", "a", 0) == ("/seqvae/playing", ["a", 0, 1])
            received = []
            while True:
                msg = OscMessage(listener.recv(65536))
                received.append((msg.address, msg.params))
                if msg.address == "/seqvae/note_off" and msg.params[1] == 67:
                    break
            on = [params for address, params in received if address == "/seqvae/note"]
            assert [p[1] for p in on] == [n[0] for n in notes]
            for params, note in zip(on, notes, strict=True):
                slot, pitch, velocity, seconds = params
                assert slot == "a" and seconds == pytest.approx(note[2] * 60 / BPM, rel=1e-3)
            assert client.replies(1, timeout=5)[0] == ("/seqvae/stopped", ["a"])  # the one-shot voice ended
            client.one("/seqvae/play", "a", 1)
            time.sleep(0.2)
            assert client.one("/seqvae/stop") == ("/seqvae/stopped", ["a"])
            assert client.one("/seqvae/stop") == ("/seqvae/stopped", [])
        finally:
            client.close()
    listener.settimeout(0.3)
    drained = []
    try:
        while True:
            msg = OscMessage(listener.recv(65536))
            drained.append((msg.address, msg.params[1]))
    except TimeoutError:
        pass
    all_events = received + [(a, [None, p]) for a, p in drained]
    ons = Counter(p[1] for a, p in all_events if a == "/seqvae/note")
    offs = Counter(p[1] for a, p in all_events if a == "/seqvae/note_off")
    assert ons == offs
    listener.close()


def test_midi_out_through_a_jack_virtual_port(jack_server, monkeypatch):
    import mido
    import rtmidi

    from seqvae.server.player import open_midi_output

    monkeypatch.setenv("MIDO_BACKEND", "mido.backends.rtmidi/UNIX_JACK")
    port = open_midi_output("seqvae-out")
    # The listener queues in rtmidi's own thread, with no Python in JACK's process cycle: a callback there waits
    # for the GIL, and a cycle it misses loses its MIDI (the test then blamed the player for the transport).
    inport = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="listener")
    inport.open_port(next(i for i, n in enumerate(inport.get_ports()) if "seqvae-out" in n))
    ended = threading.Event()
    player = Player([MidiSink(port)], bpm=BPM, on_voice_end=lambda key, slot: ended.set())
    try:
        melody = _melody([60, 62, 64, 65, 67, 69, 71, 72])
        player.play(("c", "a"), "a", melody, loop=False, channel=2)
        assert ended.wait(5)
        time.sleep(0.2)
        received = []
        while (message := inport.get_message()) is not None:
            received.append(mido.Message.from_bytes(message[0]))
    finally:
        player.close()
        inport.close_port()
    assert received[0].type == "program_change" and received[0].channel == 2
    ons = [m.note for m in received if m.type == "note_on" and m.velocity > 0]
    offs = [m.note for m in received if m.type == "note_off" or (m.type == "note_on" and m.velocity == 0)]
    assert ons == [60, 62, 64, 65, 67, 69, 71, 72]
    assert Counter(ons) == Counter(offs)
    assert all(m.channel == 2 for m in received)


def test_midi_out_without_rtmidi_says_what_to_install(monkeypatch):
    import sys

    from seqvae.server.player import open_midi_output

    monkeypatch.delenv("MIDO_BACKEND", raising=False)
    monkeypatch.setitem(sys.modules, "rtmidi", None)  # import rtmidi now fails, as on a machine without it
    monkeypatch.delitem(sys.modules, "mido.backends.rtmidi", raising=False)
    with pytest.raises(ValueError, match=r"pip install python-rtmidi"):
        open_midi_output("seqvae")
