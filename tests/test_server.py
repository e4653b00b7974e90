"""The OSC server end to end: a real Engine (tiny untrained checkpoint) behind a real server, driven
by python-osc clients over UDP, TCP OSC 1.0 (size prefix) and TCP OSC 1.1 (SLIP)."""

from __future__ import annotations

import math
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from pythonosc.osc_bundle_builder import OscBundleBuilder
from server_support import OscClient, build, notes_of, running_server

import seqvae
from seqvae.codec import read_midi
from seqvae.server.osc import encode_bundle, encode_message
from seqvae.server.server import SeqvaeServer, ServerConfig, check_bind


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("exports")
    (path / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02" + bytes(range(256)) * 4)
    (path / "huge.mid").write_bytes(b"MThd" + b"\x00" * (5 * 1024 * 1024))
    return path


@pytest.fixture(scope="module")
def server(tiny_engine, export_dir):
    with running_server(tiny_engine, export_dir) as srv:
        yield srv


@pytest.fixture
def udp(server):
    client = OscClient(server.address[1], "udp")
    yield client
    client.close()


def _bundle(messages, run_at=None):
    return encode_bundle([encode_message(a, list(args)) for a, args in messages], run_at)


@pytest.mark.parametrize("transport", ["udp", "tcp1.0", "tcp1.1"])
def test_core_flow_on_every_transport(server, transport):
    client = OscClient(server.address[1], transport)
    try:
        assert client.one("/seqvae/ping", 42) == ("/seqvae/pong", [42, server.engine.model_name, seqvae.__version__])
        assert client.one("/seqvae/ping")[1] == [server.engine.model_name, seqvae.__version__]
        a = notes_of(client.one("/seqvae/sample", "a", 0.5, 1))
        b = notes_of(client.one("/seqvae/sample", "b", 0.0, 2))
        steps_beats = server.engine.steps / 4
        for pitch, start, duration, velocity in a + b:
            assert 21 <= pitch <= 108 and 0 <= start < steps_beats and 0 < duration <= steps_beats
            assert 1 <= velocity <= 127
        reply = client.one("/seqvae/morph", "a", "b", 0.25, "m")
        assert reply[1][0] == "m"
        notes_of(reply)
        status = client.one("/seqvae/status")
        assert status[0] == "/seqvae/status"
        model, device, n_slots, tempo, clients, *names, clock = status[1]
        assert (model, device, n_slots, tempo) == (server.engine.model_name, "cpu", 3, 120.0)
        assert clients >= 1 and names == ["a", "b", "m"] and clock == "internal"
    finally:
        client.close()


def test_seeded_sample_is_repeatable_and_matches_across_transports(server):
    first, second = OscClient(server.address[1], "udp"), OscClient(server.address[1], "tcp1.1")
    try:
        one = first.one("/seqvae/sample", "x", 0.7, 1234)
        two = second.one("/seqvae/sample", "x", 0.7, 1234)
        again = first.one("/seqvae/sample", "x", 0.7, 1234)
        assert notes_of(one) == notes_of(two) == notes_of(again)
        other = first.one("/seqvae/sample", "y", 0.7, 99)
        assert notes_of(other) != notes_of(one)
        # the same melody `seqvae sample --seed 1234 --temperature 0.7` makes
        assert notes_of(one) == [tuple(n) for n in server.engine.sample(1, 0.7, 1234)[0].notes_in_beats()]
    finally:
        first.close()
        second.close()


def test_morph_and_xy_are_deterministic_with_exact_endpoints(udp):
    udp.one("/seqvae/sample", "a", 0.5, 1)
    udp.one("/seqvae/sample", "b", 0.5, 2)
    at0 = notes_of(udp.one("/seqvae/morph", "a", "b", 0.0))
    at1 = notes_of(udp.one("/seqvae/morph", "a", "b", 1.0))
    assert notes_of(udp.one("/seqvae/morph", "b", "a", 1.0)) == at0  # both decode a's latent
    assert notes_of(udp.one("/seqvae/morph", "b", "a", 0.0)) == at1
    mid = udp.one("/seqvae/morph", "a", "b", 0.5)
    assert udp.one("/seqvae/morph", "a", "b", 0.5) == mid
    assert notes_of(udp.one("/seqvae/morph_xy", "a", "b", "b", "a", 0.0, 0.0)) == at0
    assert notes_of(udp.one("/seqvae/morph_xy", "a", "b", "b", "a", 1.0, 0.0)) == at1
    assert notes_of(udp.one("/seqvae/similar", "a", 0.0, "s")) == at0  # amount 0: the same latent
    assert udp.one("/seqvae/similar", "a", 0.6, "s2", 7) == udp.one("/seqvae/similar", "a", 0.6, "s2", 7)


def test_interpolation_fills_numbered_slots_and_exports(udp, export_dir):
    udp.one("/seqvae/sample", "a", 0.5, 1)
    udp.one("/seqvae/sample", "b", 0.5, 2)
    replies = udp.call("/seqvae/interpolate", "a", "b", 5, "path", expect=5)
    assert [r[1][0] for r in replies] == [f"path_{i}" for i in range(5)]
    assert notes_of(replies[0]) == notes_of(udp.one("/seqvae/morph", "a", "b", 0.0))
    assert notes_of(replies[-1]) == notes_of(udp.one("/seqvae/morph", "a", "b", 1.0))
    address, (prefix, path) = udp.one("/seqvae/export_all", "path", "walk")
    assert (address, prefix) == ("/seqvae/exported", "path")
    assert path == str((export_dir / "walk.mid").resolve())
    score = read_midi(path)
    total = sum(len(notes_of(r)) for r in replies)
    assert len(score.lines[0].notes) == total


def test_inline_notes_encode_export_and_read_back(udp, export_dir):
    notes = [(60, 0.0, 1.0, 100), (64, 1.0, 0.5, 90), (67, 1.5, 2.5, 80), (72, 6.0, 2.0, 70)]
    flat = [v for note in notes for v in note]
    reply = udp.one("/seqvae/encode", "mine", len(notes), *flat)
    got = notes_of(reply)
    assert [(p, s, d) for p, s, d, _ in got] == [(p, s, d) for p, s, d, _ in notes]
    # floats where ints are expected, as Pd and Max send them
    assert notes_of(udp.one("/seqvae/encode", "mine2", 4.0, *[float(v) for v in flat])) == got
    address, (slot, path) = udp.one("/seqvae/export", "mine", "takes/take1")
    assert address == "/seqvae/exported" and path.endswith("takes/take1.mid")
    first = Path(path).read_bytes()
    assert udp.one("/seqvae/export", "mine2", "takes/take1")[1][1].endswith("takes/take1-2.mid")  # never overwritten
    assert Path(path).read_bytes() == first and not list(Path(path).parent.glob(".*.tmp"))
    back = notes_of(udp.one("/seqvae/encode_file", "again", "takes/take1.mid"))
    assert [(p, s, d) for p, s, d, _ in back] == [(p, s, d) for p, s, d, _ in got]
    absolute = notes_of(udp.one("/seqvae/encode_file", "abs", path))  # loopback clients may send absolute paths
    assert absolute == back
    silent = udp.one("/seqvae/encode", "rest", 0)
    assert silent[1] == ["rest", 120.0, 0]


def test_novelty_infill_and_shift(udp, tiny_engine):
    from seqvae.engine import AttributeVectors

    udp.one("/seqvae/sample", "a", 0.5, 1)
    address, (slot, score) = udp.one("/seqvae/novelty", "a")
    assert address == "/seqvae/novelty" and slot == "a" and math.isfinite(score) and score > 0
    original = notes_of(udp.one("/seqvae/morph", "a", "a", 0.0, "orig"))
    filled = notes_of(udp.one("/seqvae/infill", "orig", 2, 2, "filled", 3, timeout=60))
    per_bar_beats = tiny_engine.meter.steps_per_bar / 4

    def bar_one(notes):  # what sounds in bar 1: a note held over the bar line is cut there
        return [(p, start, min(start + length, per_bar_beats), v) for p, start, length, v in notes
                if start < per_bar_beats]

    assert bar_one(filled) == bar_one(original)
    vector = np.linspace(-1, 1, tiny_engine.z_size, dtype=np.float32)
    tiny_engine.set_attribute_vectors(AttributeVectors(["density"], vector[None]))
    try:
        assert notes_of(udp.one("/seqvae/shift", "a", "density", 0.0, "same")) == notes_of(
            udp.one("/seqvae/morph", "a", "a", 0.0))
        shifted = udp.one("/seqvae/shift", "a", "density", 3.0, "dense")
        assert shifted[1][0] == "dense"
        err = udp.one("/seqvae/shift", "a", "loudness", 1.0)
        assert err[0] == "/seqvae/error" and "unknown attribute 'loudness'" in err[1][1] and "density" in err[1][1]
    finally:
        tiny_engine.set_attribute_vectors(None)


def test_replies_keep_request_order_per_client(udp):
    udp.one("/seqvae/sample", "a", 0.5, 1)
    udp.one("/seqvae/sample", "b", 0.5, 2)
    expected = []
    for i in range(12):
        udp.send("/seqvae/morph", "a", "b", i / 11, f"m{i}")
        udp.send("/seqvae/ping", i)
        udp.send("/seqvae/novelty", "a")
        expected += [("/seqvae/notes", f"m{i}"), ("/seqvae/pong", i), ("/seqvae/novelty", "a")]
    got = [(address, args[0]) for address, args in udp.replies(len(expected))]
    assert got == expected


def test_pipelined_requests_see_the_results_of_earlier_ones(server, udp):
    """A client that sends without waiting (as Pd does) gets what it would get one request at a time."""
    sequential = []
    for request in (("/seqvae/sample", "a", 0.5, 1), ("/seqvae/sample", "b", 0.5, 2), ("/seqvae/morph", "a", "b", 0.5),
                    ("/seqvae/sample", "a", 0.5, 3), ("/seqvae/morph", "a", "b", 0.5, "m2"),
                    ("/seqvae/morph", "a", "b", 0.0, "x"), ("/seqvae/sample", "x", 0.9, 5)):
        sequential.append(udp.one(*request))
    udp.one("/seqvae/clear")
    burst = [("/seqvae/sample", ("a", 0.5, 1)), ("/seqvae/sample", ("b", 0.5, 2)), ("/seqvae/morph", ("a", "b", 0.5)),
             ("/seqvae/sample", ("a", 0.5, 3)), ("/seqvae/morph", ("a", "b", 0.5, "m2")),
             ("/seqvae/morph", ("a", "b", 0.0, "x")), ("/seqvae/sample", ("x", 0.9, 5)),
             ("/seqvae/export", ("x", "last_x.mid")), ("/seqvae/status", ())]
    for address, args in burst:  # separate datagrams, no waiting
        udp.send(address, *args)
    got = udp.replies(len(burst))
    assert got[:7] == sequential
    assert got[7][0] == "/seqvae/exported"
    exported = read_midi(got[7][1][1]).lines[0].notes
    assert [n.pitch for n in exported] == [n[0] for n in notes_of(sequential[6])]  # the last write to x won
    assert got[8][1][2] == 5  # a, b, morph, m2, x


def test_bundles_run_in_order_and_future_ones_do_not_block_others(server, udp):
    packet = _bundle([("/seqvae/ping", (1,)), ("/seqvae/sample", ("q", 0.0, 5)), ("/seqvae/ping", (2,))])
    udp.send_raw(packet)
    got = udp.replies(3)
    assert [r[0] for r in got] == ["/seqvae/pong", "/seqvae/notes", "/seqvae/pong"]
    assert got[0][1][0] == 1 and got[2][1][0] == 2
    other = OscClient(server.address[1], "udp")
    try:
        sent = time.time()
        udp.send_raw(_bundle([("/seqvae/ping", ("later",))], run_at=sent + 0.5))
        assert other.one("/seqvae/ping", "now")[1][0] == "now"
        assert time.time() - sent < 0.45  # answered while the bundle waited
        late = udp.replies(1, timeout=5)[0]
        assert late[1][0] == "later" and time.time() - sent >= 0.45
        udp.send_raw(_bundle([("/seqvae/ping", (3,))], run_at=sent + 3600))
        err = udp.replies(1)[0]
        assert err[0] == "/seqvae/error" and "ahead" in err[1][1]
    finally:
        other.close()


def test_concurrent_clients_are_micro_batched_with_identical_results(server):
    clients = [OscClient(server.address[1], "udp") for _ in range(4)]
    try:
        for client in clients:
            client.one("/seqvae/sample", "a", 0.5, 11)
            client.one("/seqvae/sample", "b", 0.5, 12)
        positions = [i / 15 for i in range(16)]
        alone = {t: notes_of(clients[0].one("/seqvae/morph", "a", "b", t)) for t in positions}
        before = server.worker.stats.batched_jobs
        for client in clients:
            builder = OscBundleBuilder(0)
            for t in positions:
                builder.add_content(build("/seqvae/morph", ("a", "b", t)))
            client.client.send(builder.build())
        for client in clients:
            for t, reply in zip(positions, client.replies(len(positions)), strict=True):
                assert notes_of(reply) == alone[t]
        assert server.worker.stats.batched_jobs - before >= 2
    finally:
        for client in clients:
            client.close()


def test_full_queue_answers_busy_and_every_request_gets_one_reply(tiny_engine, tmp_path):
    with running_server(tiny_engine, tmp_path, max_queue=2) as srv:
        client = OscClient(srv.address[1], "udp")
        client.send_raw(_bundle([("/seqvae/sample", (f"s{i}",)) for i in range(40)]))
        replies = client.replies(40)
        busy = [r for r in replies if r[0] == "/seqvae/error"]
        assert all(r[1][0] == "/seqvae/sample" and "busy" in r[1][1] for r in busy)
        assert len(busy) >= 20 and len(replies) - len(busy) >= 1
        assert client.quiet(0.3)
        assert client.one("/seqvae/ping", 1)[0] == "/seqvae/pong"
        client.close()


def test_client_table_is_bounded(tiny_engine, tmp_path):
    with running_server(tiny_engine, tmp_path, max_clients=2) as srv:
        first, second, third = (OscClient(srv.address[1], "udp") for _ in range(3))
        try:
            for client in (first, second):
                client.send_raw(_bundle([("/seqvae/ping", ("due",))], run_at=time.time() + 1.0))  # busy for a second
            time.sleep(0.1)
            err = third.one("/seqvae/ping", 1)
            assert err[0] == "/seqvae/error" and "busy: 2 clients are active" in err[1][1]
            assert first.replies(1)[0][1][0] == "due" and second.replies(1)[0][1][0] == "due"
            time.sleep(0.1)
            assert third.one("/seqvae/ping", 2)[1][0] == 2  # an idle client made room
            assert srv.client_count == 2
        finally:
            for client in (first, second, third):
                client.close()


def test_long_replies_are_paged(tiny_engine, tmp_path, server):
    plain = OscClient(server.address[1], "udp")
    whole = notes_of(plain.one("/seqvae/sample", "p", 0.5, 3))
    plain.close()
    assert len(whole) > 8
    with running_server(tiny_engine, tmp_path, page_bytes=200) as srv:
        client = OscClient(srv.address[1], "udp")
        client.send("/seqvae/sample", "p", 0.5, 3)
        first = client.replies(1)[0]
        assert first[0] == "/seqvae/notes_page"
        slot, page, pages, bpm, count, *flat = first[1]
        assert (slot, page, bpm) == ("p", 1, 120.0) and pages > 1
        rest = client.replies(pages - 1)
        flat_all = list(flat)
        for number, (address, args) in enumerate(rest, start=2):
            assert address == "/seqvae/notes_page" and args[1:3] == [number, pages]
            assert len(encode_message(address, args)) <= 200
            flat_all += args[5:]
        assert [tuple(flat_all[i:i + 4]) for i in range(0, len(flat_all), 4)] == whole
        client.close()


def test_reply_to_redirects_replies(udp):
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(10)
    try:
        udp.send("/seqvae/reply_to", listener.getsockname()[1])
        udp.send("/seqvae/ping", "here")
        from pythonosc.osc_message import OscMessage

        first = OscMessage(listener.recv(65536))
        second = OscMessage(listener.recv(65536))
        assert (first.address, first.params) == ("/seqvae/reply_to", [listener.getsockname()[1]])
        assert second.address == "/seqvae/pong" and second.params[0] == "here"
        assert udp.quiet(0.2)
    finally:
        listener.close()


def test_fixed_reply_port_makes_one_shot_senders_one_client(tiny_engine, tmp_path):
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(10)
    with running_server(tiny_engine, tmp_path, reply_port=listener.getsockname()[1]) as srv:
        from pythonosc.osc_message import OscMessage

        for request in (("/seqvae/sample", "a", 0.5, 1), ("/seqvae/sample", "b", 0.5, 2),
                        ("/seqvae/morph", "a", "b", 0.5)):
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a new source port each time
            sender.sendto(encode_message(request[0], list(request[1:])), srv.address)
            sender.close()
            reply = OscMessage(listener.recv(65536))
            assert reply.address == "/seqvae/notes", reply.params
    listener.close()


def test_tcp_framing_errors(server):
    raw = socket.create_connection(server.address, timeout=10)
    raw.sendall(struct.pack(">i", 10**9) + b"junk")
    data = b""
    while True:
        chunk = raw.recv(65536)
        if not chunk:
            break
        data += chunk
    raw.close()
    (size,) = struct.unpack(">i", data[:4])
    from pythonosc.osc_message import OscMessage

    msg = OscMessage(data[4 : 4 + size])
    assert msg.address == "/seqvae/error" and "size prefix" in msg.params[1]
    slip = OscClient(server.address[1], "tcp1.1")
    slip.send_raw(b"\xc0garbage\xc0")
    err = slip.replies(1)[0]
    assert err[0] == "/seqvae/error" and "not an OSC packet" in err[1][1]
    assert slip.one("/seqvae/ping", 5)[1][0] == 5  # a bad SLIP frame does not end the connection
    slip.close()


def test_tcp_slots_belong_to_the_connection(server):
    first = OscClient(server.address[1], "tcp1.0")
    first.one("/seqvae/sample", "only_here", 0.5, 1)
    second = OscClient(server.address[1], "tcp1.0")
    err = second.one("/seqvae/morph", "only_here", "only_here", 0.5)
    assert err[0] == "/seqvae/error" and "slot 'only_here' is empty" in err[1][1]
    count = server.client_count
    first.close()
    deadline = time.monotonic() + 5
    while server.client_count >= count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.client_count == count - 1
    second.close()


BAD_REQUESTS = [
    ("/seqvae/morph", ("a", "b", "half"), "t must be a number from 0 to 1, got 'half' (string)"),
    ("/seqvae/morph", ("a", "b", math.nan), "got nan"),
    ("/seqvae/morph", ("a", "b", math.inf), "got inf"),
    ("/seqvae/morph", ("a", "b", 1.5), "from 0 to 1, got 1.5"),
    ("/seqvae/morph", ("a", "nope", 0.5), "slot 'nope' is empty"),
    ("/seqvae/morph", ("a",), "missing b: send /seqvae/morph a b t [out]"),
    ("/seqvae/morph_xy", ("a", "b", "a", "b", 0.5, -1.0), "y must be a number from 0 to 1"),
    ("/seqvae/sample", (), "missing slot"),
    ("/seqvae/sample", ("a", -1.0), "temperature must be a number from 0 to 5"),
    ("/seqvae/sample", ("a", 0.5, 2.5), "seed must be a whole number"),
    ("/seqvae/sample", ("a", 0.5, 2**40), "seed must be a whole number from -1 to 2147483647"),
    ("/seqvae/sample", ("a b",), "has spaces"),
    ("/seqvae/sample", ("x" * 100,), "1 to 64 characters"),
    ("/seqvae/encode", ("e", 1e9), "n must be a whole number from 0 to 1024, got 1000000000"),
    ("/seqvae/encode", ("e", 2, 60, 0.0, 1.0, 100), "needs 8 numbers"),
    ("/seqvae/encode", ("e", 1, 200, 0.0, 1.0, 100), "note 1 pitch must be a whole number from 0 to 127"),
    ("/seqvae/encode", ("e", 1, 60, 600.0, 1.0, 100), "outside the longest clip"),
    ("/seqvae/encode", ("e", 1, 60, 0.0, 1.0, 0), "note 1 velocity must be"),
    ("/seqvae/encode", ("e", 1, 10, 0.0, 1.0, 90), "pitch 10 is outside 21..108"),
    ("/seqvae/encode", ("e", 1, 60, 0.0, math.nan, 90), "note 1 duration must be a number"),
    ("/seqvae/encode_file", ("f", "missing.mid"), "no file at"),
    ("/seqvae/encode_file", ("f", "corrupt.mid"), "not a readable MIDI file"),
    ("/seqvae/encode_file", ("f", "huge.mid"), "over the 4 MB limit"),
    ("/seqvae/encode_file", ("f", "."), "is not a file"),
    ("/seqvae/interpolate", ("a", "b", 1000, "p"), "steps must be a whole number from 2 to 64"),
    ("/seqvae/interpolate", ("a", "b", 1, "p"), "steps must be a whole number from 2 to 64, got 1"),
    ("/seqvae/export", ("a", "../evil.mid"), "climbs out with '..'"),
    ("/seqvae/export", ("a", "/tmp/evil.mid"), "is absolute"),
    ("/seqvae/export", ("a", "sub\\evil.mid"), "backslash"),
    ("/seqvae/export", ("nope", "x.mid"), "slot 'nope' is empty"),
    ("/seqvae/export_all", ("zz", "x.mid"), "no interpolation named 'zz'"),
    ("/seqvae/shift", ("a", "density", 1.0), "no attribute vectors yet"),
    ("/seqvae/shift", ("a", "density", 100.0), "amount must be a number from -10 to 10"),
    ("/seqvae/similar", ("a", 2.0), "amount must be a number from 0 to 1"),
    ("/seqvae/infill", ("a", 2, 1), "run backwards"),
    ("/seqvae/infill", ("a", 1, 9), "does not exist"),
    ("/seqvae/tempo", (1000.0,), "bpm must be a number from 20 to 400"),
    ("/seqvae/play", ("nope",), "slot 'nope' is empty"),
    ("/seqvae/play", ("a", 1, 17), "channel must be a whole number from 1 to 16"),
    ("/seqvae/reply_to", (0,), "port must be a whole number from 1 to 65535"),
    ("/seqvae/note_target", ("8.8.8.8", 9000), "note events go only to this machine"),
    ("/seqvae/note_target", ("not-a-host", 9000), "not an IP address"),
    ("/seqvae/novelty", (True,), "slot must be a slot name such as 'a', got T (a boolean)"),
    ("/seqvae/ping", (b"blob",), "id must be a number or a string, got a 4-byte blob"),
    ("/seqvae/status", (1,), "1 arguments is too many"),
    ("/seqvae/clear", ("nope",), "slot 'nope' is empty"),
    ("/seqvae/morf", ("a", "b", 0.5), "unknown address '/seqvae/morf'"),
    ("/other/thing", (), "send one of /seqvae/ping"),
]

BAD_PACKETS = [
    (encode_message("/seqvae/encode", ["e", 1, "x" * 40000]), "/seqvae/encode", "over the 32768-byte limit"),
    (b"\x00\x01garbage!", "?", "not an OSC packet"),
    (b"/seqvae/ping\x00\x00\x00\x00,c\x00\x00\x00\x00\x00A", "/seqvae/ping", "type tag 'c' is not supported"),
    (b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", -8) + b"/a\x00\x00", "?", "element size -8"),
    (b"/seqvae/ping\x00\x00\x00\x00,i\x00\x00", "/seqvae/ping", "malformed OSC message"),
]


def test_every_bad_request_gets_a_clear_error(server, udp):
    udp.one("/seqvae/sample", "a", 0.5, 1)
    udp.one("/seqvae/sample", "b", 0.5, 2)
    assert len(BAD_REQUESTS) + len(BAD_PACKETS) >= 30
    for address, args, needle in BAD_REQUESTS:
        reply = udp.one(address, *args)
        assert reply[0] == "/seqvae/error", (address, args, reply)
        assert reply[1][0] == address and needle in reply[1][1], (address, args, reply)
    for packet, address, needle in BAD_PACKETS:
        udp.send_raw(packet)
        reply = udp.replies(1)[0]
        assert reply[0] == "/seqvae/error" and reply[1][0] == address and needle in reply[1][1], (packet[:30], reply)
    assert udp.quiet(0.2)
    assert udp.one("/seqvae/ping", "alive")[1][0] == "alive"


def test_remote_binding_needs_flag_and_allow_list(tiny_engine, tmp_path):
    with pytest.raises(ValueError, match="--allow-remote"):
        check_bind(ServerConfig(host="0.0.0.0"))
    with pytest.raises(ValueError, match="needs --allow"):
        check_bind(ServerConfig(host="0.0.0.0", allow_remote=True))
    with pytest.raises(ValueError, match="not an IP address or network"):
        check_bind(ServerConfig(host="0.0.0.0", allow_remote=True, allow=("10.0.0.300",)))
    srv = SeqvaeServer(tiny_engine, ServerConfig(host="0.0.0.0", allow_remote=True, allow=("10.1.2.0/24,10.9.9.9",),
                                                 export_dir=tmp_path))
    try:
        allowed = srv.allow_list.allows
        assert allowed("127.0.0.1") and allowed("::1")
        assert allowed("10.1.2.77") and allowed("10.9.9.9") and allowed("::ffff:10.1.2.5")
        assert not allowed("10.1.3.1") and not allowed("192.168.0.2")
        srv.transport.handle_datagram(encode_message("/seqvae/ping"), ("192.168.0.2", 5000))  # dropped, never answered
        assert srv.stats.dropped == 1 and srv.client_count == 0
    finally:
        srv.close_parts()
    local = SeqvaeServer(tiny_engine, ServerConfig(export_dir=tmp_path))
    try:
        assert not local.allow_list.allows("10.1.2.77")
    finally:
        local.close_parts()
