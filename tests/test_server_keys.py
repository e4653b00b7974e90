"""/seqvae/key, /seqvae/range and /seqvae/transpose over OSC: per client, on every melody, until cleared."""

from __future__ import annotations

import contextlib

import pytest
from server_support import OscClient, notes_of, running_server

from seqvae.codec.scales import Key

DORIAN = Key.parse("D dorian")


@pytest.fixture(scope="module")
def server(tiny_engine, tmp_path_factory):
    with running_server(tiny_engine, tmp_path_factory.mktemp("keys")) as srv:
        yield srv


@pytest.fixture
def udp(server):
    with contextlib.closing(OscClient(server.address[1], "udp")) as client:
        yield client


def _inside(notes, low: int = 57, high: int = 76) -> bool:
    return all(low <= pitch <= high and DORIAN.contains(pitch) for pitch, *_ in notes)


def test_key_and_range_apply_to_every_melody_until_cleared(server, udp):
    assert udp.one("/seqvae/key") == ("/seqvae/key", ["off"])
    assert udp.one("/seqvae/range") == ("/seqvae/range", ["off"])
    assert udp.one("/seqvae/key", "D", "dorian") == ("/seqvae/key", ["D", "dorian"])
    assert udp.one("/seqvae/range", 57, 76) == ("/seqvae/range", [57, 76])
    assert udp.one("/seqvae/key") == ("/seqvae/key", ["D", "dorian"])
    made = []
    for i in range(4):
        made += notes_of(udp.one("/seqvae/sample", f"s{i}", 1.5, i))
    made += notes_of(udp.one("/seqvae/morph", "s0", "s1", 0.4, "m"))
    made += notes_of(udp.one("/seqvae/morph_xy", "s0", "s1", "s2", "s3", 0.3, 0.7, "xy"))
    made += notes_of(udp.one("/seqvae/similar", "s0", 0.8, "v", 3))
    for reply in udp.call("/seqvae/interpolate", "s0", "s1", 3, "walk", expect=3):
        made += notes_of(reply)
    made += notes_of(udp.one("/seqvae/infill", "s2", 1, 1, "filled", 4))
    assert made and _inside(made), [n for n in made if not _inside([n])][:4]

    other = OscClient(server.address[1], "udp")  # another client keeps the model's whole range
    try:
        assert other.one("/seqvae/key") == ("/seqvae/key", ["off"])
        theirs = [n for i in range(4) for n in notes_of(other.one("/seqvae/sample", "x", 1.5, i))]
        assert not _inside(theirs), "unconstrained samples of the tiny model stray outside"
    finally:
        other.close()

    assert udp.one("/seqvae/key", "off") == ("/seqvae/key", ["off"])
    assert udp.one("/seqvae/range", "off") == ("/seqvae/range", ["off"])
    free = [n for i in range(4) for n in notes_of(udp.one("/seqvae/sample", "f", 1.5, i))]
    assert not _inside(free), "cleared: the whole range again"


def test_range_forms_and_a_personal_view_keeps_the_constraint(udp):
    assert udp.one("/seqvae/range", "A3", "E5") == ("/seqvae/range", [57, 76])
    assert udp.one("/seqvae/range", "60-72") == ("/seqvae/range", [60, 72])
    assert udp.one("/seqvae/key", "F# harmonic minor") == ("/seqvae/key", ["F#", "harmonic minor"])
    for i in range(4):
        udp.one("/seqvae/sample", f"p{i}", 1.0, i)
    assert udp.one("/seqvae/personalize", "mine", "p0", "p1", "p2", "p3")[0] == "/seqvae/personalized"
    key = Key.parse("F# harmonic minor")
    notes = [n for i in range(3) for n in notes_of(udp.one("/seqvae/sample", "q", 1.5, i))]
    assert notes and all(60 <= p <= 72 and key.contains(p) for p, *_ in notes)
    udp.one("/seqvae/personalize", "off")
    udp.one("/seqvae/key", "off")
    udp.one("/seqvae/range", "off")


@pytest.mark.parametrize("address, args, message", [
    ("/seqvae/key", ("D", "lydian"), "unknown mode 'lydian'"),
    ("/seqvae/key", ("H", "major"), "unknown root 'H'"),
    ("/seqvae/key", (3,), "unknown root '3'"),
    ("/seqvae/range", (76, 57), "lowest first"),
    ("/seqvae/range", (57, 200), "high must be a whole number from 0 to 127"),
    ("/seqvae/range", (1, 2, 3), "takes low high"),
    ("/seqvae/range", (0, 10), "outside the model's pitches 21-108"),
])
def test_bad_keys_and_ranges_are_clear_errors(udp, address, args, message):
    err = udp.one(address, *args)
    assert err[0] == "/seqvae/error" and message in err[1][1], err


def test_an_impossible_pair_is_refused_and_the_old_setting_stays(udp):
    assert udp.one("/seqvae/range", 65, 66) == ("/seqvae/range", [65, 66])
    err = udp.one("/seqvae/key", "C", "pentatonic", "major")
    assert err[0] == "/seqvae/error" and "no pitch of C pentatonic major lies in range 65-66" in err[1][1]
    assert udp.one("/seqvae/key") == ("/seqvae/key", ["off"])
    udp.one("/seqvae/range", "off")


def test_transpose_moves_a_slot_and_refuses_leaving_the_model(udp):
    notes_of(udp.one("/seqvae/encode", "t", 2, 60, 0.0, 1.0, 100, 64, 1.0, 0.5, 90))
    moved = notes_of(udp.one("/seqvae/transpose", "t", -3, "down"))
    assert [n[0] for n in moved] == [57, 61]
    assert [n[0] for n in notes_of(udp.one("/seqvae/transpose", "t", 2))] == [62, 66]  # in place
    similar = notes_of(udp.one("/seqvae/similar", "down", 0.0, "again"))  # its latent was re-encoded
    assert similar is not None
    err = udp.one("/seqvae/transpose", "t", 48)
    assert err[0] == "/seqvae/error" and "outside the model's pitches 21-108" in err[1][1] and "+42" in err[1][1]
    err = udp.one("/seqvae/transpose", "nothing", 1)
    assert err[0] == "/seqvae/error" and "empty" in err[1][1]
