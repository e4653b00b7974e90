"""MIDI in through a real JACK port (jackd's dummy backend): a played phrase captured into a slot, a CC
mapped to a morph, an OSC fader from liblo's oscsend mapped to a morph, and the errors for bad mappings."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from server_support import OscClient, jack_keyboard, notes_of, running_server

from seqvae.server.midi_in import line_of

PORT = "seqvae-in-test"


def test_line_of_keeps_the_top_note_and_restrikes_a_held_lower_one():
    # C held for a bar, E on top for beats 1-2: C, E, then C struck again; a late, short note is quantized
    played = [(60, 0.0, 4.0, 90), (64, 1.02, 2.0, 100), (67, 3.1, 3.2, 80)]
    assert line_of(played, 16) == [(60, 0, 4, 90), (64, 4, 8, 100), (60, 8, 12, 90), (67, 12, 13, 80),
                                   (60, 13, 16, 90)]


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize("bpm", [90.0, 160.0])
def test_a_phrase_played_into_midi_in_comes_back_note_for_note(jack_server, tiny_engine, tmp_path, monkeypatch, bpm):
    monkeypatch.setenv("MIDO_BACKEND", "mido.backends.rtmidi/UNIX_JACK")
    with running_server(tiny_engine, tmp_path, midi_in=PORT, bpm=bpm) as srv:
        client = OscClient(srv.address[1])
        keys = jack_keyboard(PORT)
        try:
            address, (slot, bars, start) = client.one("/seqvae/record", "take", 1)
            assert (address, slot, bars) == ("/seqvae/recording", "take", 1)
            clock = srv.player.clock
            phrase = [(60, 0.0, 1.0), (62, 1.0, 0.5), (64, 1.5, 0.5), (67, 2.0, 1.5)]  # beats
            for pitch, at, length in phrase:
                for kind, when in ((0x90, at), (0x80, at + length - 0.05)):
                    target = clock.time_at(start + when)
                    while time.perf_counter() < target:
                        time.sleep(0.0005)
                    keys.send_message([kind, pitch, 100 if kind == 0x90 else 0])
            notes = notes_of(client.receive(15))
            assert [(p, s, d) for p, s, d, _ in notes] == phrase
        finally:
            keys.close_port()
            client.close()


def test_an_empty_take_and_record_without_midi_in_are_errors(jack_server, tiny_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("MIDO_BACKEND", "mido.backends.rtmidi/UNIX_JACK")
    with running_server(tiny_engine, tmp_path, bpm=300.0) as srv:
        client = OscClient(srv.address[1])
        error = client.one("/seqvae/record", "a")
        assert error[0] == "/seqvae/error" and "--midi-in" in error[1][1]
        client.close()
    with running_server(tiny_engine, tmp_path, midi_in=PORT, bpm=300.0) as srv:
        client = OscClient(srv.address[1])
        assert client.one("/seqvae/record", "a", 1)[0] == "/seqvae/recording"
        error = client.receive(10)
        assert error[0] == "/seqvae/error" and "no notes were played" in error[1][1]
        assert client.one("/seqvae/record", "a", 9)[0] == "/seqvae/error"
        assert client.one("/seqvae/record", "a", 1)[0] == "/seqvae/recording"
        assert client.one("/seqvae/record_cancel", "a")[1] == ["a"]
        assert client.quiet(1.0)
        client.close()


def _melody_changes(srv, slot, before):
    def changed():
        found = [c.slots.get(slot) for c in list(srv.clients.clients.values())]
        return any(s is not None and s is not before for s in found)
    return changed


def test_a_cc_morphs_a_slot_and_bad_mappings_are_refused(jack_server, tiny_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("MIDO_BACKEND", "mido.backends.rtmidi/UNIX_JACK")
    with running_server(tiny_engine, tmp_path, midi_in=PORT) as srv:
        client = OscClient(srv.address[1])
        keys = jack_keyboard(PORT)
        try:
            notes_of(client.one("/seqvae/sample", "a", 0.5, 1))
            notes_of(client.one("/seqvae/sample", "b", 0.5, 2))
            mapped = client.one("/seqvae/map_cc", 1, 7, "/seqvae/morph", "a", "b", "$", "knob")
            assert mapped == ("/seqvae/mapped_cc", [1, 7, "/seqvae/morph", "a", "b", "$0:1", "knob"])
            keys.send_message([0xB0, 7, 127])
            assert _wait(lambda: any("knob" in c.slots for c in srv.clients.clients.values()))
            knob = next(c for c in srv.clients.clients.values() if "knob" in c.slots).slots["knob"]
            b = next(c for c in srv.clients.clients.values() if "b" in c.slots).slots["b"]
            assert knob.z == pytest.approx(b.z, abs=1e-5)  # the knob at the top is slot b
            for value in range(0, 128, 8):  # a sweep: coalesced, never more decodes than moves
                keys.send_message([0xB0, 7, value])
            assert _wait(lambda: srv.knobs.fired >= 2)
            assert client.quiet(0.5)  # a knob's requests reply nowhere
            for args, words in (((1, 128, "/seqvae/morph", "a", "b", "$"), "cc"),
                                ((0, 7, "/seqvae/morph", "a", "b", "$"), "channel"),
                                ((1, 7, "/seqvae/nope", "$"), "seqvae address"),
                                ((1, 7, "/seqvae/map_cc", 1, 2), "can't be run from a knob"),
                                ((1, 7, "/seqvae/morph", "a", "$", "0.5"), "number argument"),
                                ((1, 7, "/seqvae/morph", "a", "b", "$5:9"), "takes 0 to 1")):
                error = client.one("/seqvae/map_cc", *args)
                assert error[0] == "/seqvae/error" and words in error[1][1], (args, error)
            assert client.one("/seqvae/unmap_cc", 1, 7) == ("/seqvae/unmapped_cc", [1, 7])
            assert client.one("/seqvae/unmap_cc", 1, 7)[0] == "/seqvae/error"
        finally:
            keys.close_port()
            client.close()


@pytest.mark.skipif(shutil.which("oscsend") is None, reason="liblo's oscsend is not installed (apt liblo-tools)")
def test_an_oscsend_fader_drives_a_morph(tiny_engine, tmp_path):
    with running_server(tiny_engine, tmp_path) as srv:
        client = OscClient(srv.address[1])
        notes_of(client.one("/seqvae/sample", "a", 0.5, 1))
        notes_of(client.one("/seqvae/sample", "b", 0.5, 2))
        shadow = client.one("/seqvae/map_osc", "/seqvae/morph", "/seqvae/sample", "x")
        assert shadow[0] == "/seqvae/error" and "shadow" in shadow[1][1]
        assert client.one("/seqvae/map_osc", "/1/fader1", 0, 0.0, 1.0, "/seqvae/morph", "a", "b", "$", "fader")[0] \
            == "/seqvae/mapped_osc"
        subprocess.run(["oscsend", "127.0.0.1", str(srv.address[1]), "/1/fader1", "f", "1.0"], check=True)
        assert _wait(lambda: any("fader" in c.slots for c in srv.clients.clients.values()))
        owner = next(c for c in srv.clients.clients.values() if "fader" in c.slots)
        assert owner.slots["fader"].z == pytest.approx(owner.slots["b"].z, abs=1e-5)
        subprocess.run(["oscsend", "127.0.0.1", str(srv.address[1]), "/1/fader1", "s", "loud"], check=True)
        assert _wait(lambda: srv.stats.errors >= 2)  # a string on a mapped fader: an error to its sender
        assert client.one("/seqvae/unmap_osc", "/1/fader1") == ("/seqvae/unmapped_osc", ["/1/fader1"])
        client.close()


def test_config_mappings_belong_to_the_house_and_bad_entries_are_named(tiny_engine, tmp_path):
    from seqvae.server.server import SeqvaeServer, ServerConfig

    with pytest.raises(ValueError, match=r"map_osc entry 1 .*shadow"):
        SeqvaeServer(tiny_engine, ServerConfig(port=0, export_dir=tmp_path, map_osc=(["/seqvae/x", "/seqvae/stop"],)))
    with pytest.raises(ValueError, match=r"map_cc entry 1 .*needs MIDI in"):
        SeqvaeServer(tiny_engine, ServerConfig(port=0, export_dir=tmp_path, map_cc=([1, 1, "/seqvae/stop"],)))
    trigger = ["/2/push1", "/seqvae/sample", "house_riff", 0.5, 3]  # a button: no $
    with running_server(tiny_engine, tmp_path, map_osc=(trigger,)) as srv:
        OscClient(srv.address[1]).send("/2/push1", 1.0)
        assert _wait(lambda: "house_riff" in srv.house.slots)
