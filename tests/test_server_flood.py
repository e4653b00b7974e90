"""Nobody loses their work to someone else's traffic: real sockets on 127.0.0.1 against a server with a
tiny model. Idle, half-sent and garbage connections, garbage datagrams, a full client table and a burst
of requests from one sender must never cost a performer their slots or make their knob 'busy'."""

from __future__ import annotations

import logging
import socket
import threading
import time

import numpy as np
import pytest
from server_support import OscClient, notes_of, running_server

from seqvae.server.clients import Client, Slot
from seqvae.server.osc import encode_message, size_prefix_encode
from seqvae.server.parking import ParkedSlots
from seqvae.server.worker import DecodeJob, InferenceWorker

HOST = "127.0.0.1"


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the server never got there"
        time.sleep(0.02)


def raw_tcp(port: int) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=10)


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends before it closes the connection; fails if it stays open past `timeout`."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def still_open(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except TimeoutError:
        return True
    except ConnectionResetError:
        return False


def performer(port: int, transport: str = "udp") -> OscClient:
    client = OscClient(port, transport)
    notes_of(client.one("/seqvae/sample", "a", 0.5, 1))
    notes_of(client.one("/seqvae/sample", "b", 0.5, 2))
    return client


def morph_answers(client: OscClient, t: float = 0.5) -> None:
    reply = client.one("/seqvae/morph", "a", "b", t, "knob")
    assert reply[0] == "/seqvae/notes", reply
    notes_of(reply)


def test_idle_connections_beyond_the_host_cap_are_refused_while_the_performer_answers(tiny_engine, tmp_path):
    with running_server(tiny_engine, tmp_path, max_connections=5) as srv:
        port = srv.address[1]
        tcp_performer = performer(port, "tcp1.0")  # one of this host's 5
        udp_performer = performer(port)
        flood = [raw_tcp(port) for _ in range(12)]  # connect and never send a byte
        try:
            wait_for(lambda: srv.stats.tcp_connections + srv.stats.refused_connections == 13)
            assert len(srv.transport.connections[HOST]) == 5
            assert srv.stats.refused_connections == 8
            late = raw_tcp(port)
            said = read_until_closed(late)  # refused at once, with the reason
            late.close()
            assert b"too many connections" in said and b"--max-connections" in said
            for t in (0.1, 0.5, 0.9):
                morph_answers(tcp_performer, t)
                morph_answers(udp_performer, t)
            assert srv.client_count == 2  # the silent connections hold no place in the client table
        finally:
            for sock in flood:
                sock.close()
            tcp_performer.close()
            udp_performer.close()


def test_idle_connections_that_hold_nothing_time_out_and_slot_holders_stay(tiny_engine, tmp_path):
    with running_server(tiny_engine, tmp_path, idle_timeout_s=0.4, frame_timeout_s=30.0) as srv:
        port = srv.address[1]
        keeper = performer(port, "tcp1.1")  # has slots: stays however quiet
        empty = OscClient(port, "tcp1.0")
        assert empty.one("/seqvae/ping", 1)[0] == "/seqvae/pong"  # a client, but holding nothing
        silent = raw_tcp(port)
        try:
            read_until_closed(silent)
            read_until_closed(empty.client.socket)
            wait_for(lambda: srv.client_count == 1)
            time.sleep(1.2)  # three idle timeouts
            morph_answers(keeper)
            assert srv.stats.timed_out == 2
        finally:
            silent.close()
            empty.close()
            keeper.close()


def test_a_connection_moving_a_mapped_fader_is_not_idle(tiny_engine, tmp_path):
    with running_server(tiny_engine, tmp_path, idle_timeout_s=0.3, frame_timeout_s=30.0) as srv:
        port = srv.address[1]
        mapper = performer(port)
        assert mapper.one("/seqvae/map_osc", "/1/fader1", "/seqvae/morph", "a", "b", "$", "knob")[0] == \
            "/seqvae/mapped_osc"
        fader = raw_tcp(port)  # a control surface over TCP: it only ever sends its own address
        try:
            for n in range(30):
                fader.sendall(size_prefix_encode(encode_message("/1/fader1", [n / 30])))
                time.sleep(0.05)
            assert still_open(fader) and srv.stats.timed_out == 0 and srv.client_count == 1
            wait_for(lambda: "knob" in srv.clients.clients[mapper_key(srv)].slots)
        finally:
            fader.close()
            mapper.close()


def mapper_key(srv) -> tuple:
    return next(iter(srv.clients.clients))


def test_half_sent_packets_time_out_even_when_trickled(tiny_engine, tmp_path):
    with running_server(tiny_engine, tmp_path, idle_timeout_s=30.0, frame_timeout_s=0.4) as srv:
        port = srv.address[1]
        user = performer(port, "tcp1.0")
        size_prefixed = raw_tcp(port)
        size_prefixed.sendall(b"\x00\x00\x01\x00/seqvae/pi")  # 256 bytes announced, 11 sent
        slip = raw_tcp(port)
        slip.sendall(b"\xc0/seqvae/pi")  # a SLIP frame never ended
        trickle = raw_tcp(port)
        trickle.sendall(b"\x00\x00\x04\x00")
        silent = raw_tcp(port)  # holds nothing, but the idle timeout is long
        try:
            for _ in range(100):  # one byte every 50 ms keeps data arriving; the packet's clock still runs
                try:
                    trickle.sendall(b"x")
                except OSError:
                    break
                if not still_open(trickle):
                    break
                time.sleep(0.05)
            else:
                pytest.fail("a trickled packet kept its connection open for 5 s")
            read_until_closed(size_prefixed)
            read_until_closed(slip)
            assert still_open(silent)
            user.send("/seqvae/morph", "a", "b", 0.5, "knob")  # a whole packet ends the clock: it answers
            notes_of(user.replies(1)[0])
            assert srv.stats.timed_out == 3
        finally:
            for sock in (size_prefixed, slip, trickle, silent):
                sock.close()
            user.close()


def test_garbage_senders_never_take_a_slot_holders_place(tiny_engine, tmp_path):
    with running_server(tiny_engine, tmp_path, max_clients=2) as srv:
        port = srv.address[1]
        user = performer(port)
        rng = np.random.default_rng(0)
        senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(40)]
        streams = [raw_tcp(port) for _ in range(10)]
        try:
            for i, sock in enumerate(senders):
                sock.settimeout(10)
                garbage = rng.bytes(int(rng.integers(1, 200))) if i % 2 else encode_message("/other/tool", [1.0])
                sock.sendto(garbage, (HOST, port))
            for sock in streams:
                sock.sendall(b"\xc0" + rng.bytes(40).replace(b"\xc0", b"") + b"\xc0")
            for sock in senders[:4]:  # each is answered, though it is nobody's client
                assert b"/seqvae/error" in sock.recv(65536)
            for sock in streams[:3]:
                sock.settimeout(10)
                assert b"/seqvae/error" in sock.recv(65536)
            for t in (0.2, 0.8):
                morph_answers(user, t)
            assert srv.client_count == 1
            status = user.one("/seqvae/status")
            assert status[1][2] == 3 and {"a", "b", "knob"} <= set(status[1])
        finally:
            for sock in senders + streams:
                sock.close()
            user.close()


def test_a_udp_slot_holder_let_go_by_a_full_table_gets_its_slots_back_on_return(tiny_engine, tmp_path):
    with running_server(tiny_engine, tmp_path, max_clients=2) as srv:
        port = srv.address[1]
        first = performer(port)
        second = OscClient(port)
        notes_of(second.one("/seqvae/sample", "x", 0.5, 3))
        newcomer = OscClient(port)
        try:
            assert newcomer.one("/seqvae/ping", 1)[0] == "/seqvae/pong"  # full: first (heard least lately) parked
            assert len(srv.parked) == 2 and srv.client_count == 2
            morph_answers(first)  # back with the same port: its slots came back (the newcomer made room)
            assert len(srv.parked) == 0
            assert notes_of(second.one("/seqvae/morph", "x", "x", 0.0, "y"))  # second kept its own
        finally:
            for client in (first, second, newcomer):
                client.close()


def test_a_tcp_slot_holder_let_go_claims_its_slots_with_restore(tiny_engine, tmp_path):
    with running_server(tiny_engine, tmp_path, max_clients=2) as srv:
        port = srv.address[1]
        old = performer(port, "tcp1.0")
        other = OscClient(port)
        notes_of(other.one("/seqvae/sample", "x", 0.5, 3))
        newcomer = OscClient(port)
        try:
            newcomer.one("/seqvae/ping", 1)
            read_until_closed(old.client.socket)  # its connection was closed; its slots were parked
            assert len(srv.parked) == 2
            again = OscClient(port, "tcp1.1")
            err = again.one("/seqvae/morph", "a", "b", 0.5)
            assert err[0] == "/seqvae/error" and "slot 'a' is empty" in err[1][1]
            err = again.one("/seqvae/restore", "nope")
            assert err[0] == "/seqvae/error" and "slot 'nope' is not parked" in err[1][1] and "a, b" in err[1][1]
            assert again.one("/seqvae/restore", "b") == ("/seqvae/restored", ["b"])
            assert again.one("/seqvae/restore") == ("/seqvae/restored", ["a"])
            morph_answers(again)
            err = again.one("/seqvae/restore")
            assert err[0] == "/seqvae/error" and f"nothing is parked for {HOST}" in err[1][1]
            again.close()
        finally:
            for client in (old, other, newcomer):
                client.close()


def test_parked_slots_are_bounded_oldest_first(tiny_engine, tmp_path, caplog):
    melody = tiny_engine.sample(1, seed=0)[0]
    z = np.zeros(tiny_engine.z_size, np.float32)

    def client(n: int, names: list[str]) -> Client:
        made = Client(("udp", HOST, n), HOST, (HOST, n))
        for name in names:
            made.slots[name] = Slot(melody, z)
        made.interpolations["walk"] = names[:2]
        return made

    parked = ParkedSlots(limit=5)
    parked.park(client(1, ["a", "b", "c"]))
    with caplog.at_level(logging.WARNING, logger="seqvae.server"):
        parked.park(client(2, ["d", "e", "f"]))
    assert len(parked) == 5 and parked.dropped == 1
    assert "dropped the 1 oldest" in caplog.text and "('udp', '127.0.0.1', 1)" in caplog.text
    first = parked.clients[("udp", HOST, 1)]
    assert list(first.slots) == ["b", "c"] and "walk" not in first.interpolations  # its path lost a step
    parked.park(client(3, ["g", "h", "i", "j"]))
    assert len(parked) == 5 and ("udp", HOST, 1) not in parked.clients
    assert list(parked.clients[("udp", HOST, 2)].slots) == ["f"]
    owner, names = parked.find(HOST)
    assert owner.key == ("udp", HOST, 3) and names == ["g", "h", "i", "j"]
    slots, paths = parked.take(owner, names)
    assert [name for name, _ in slots] == names and paths == {"walk": ["g", "h"]} and len(parked) == 1

    with running_server(tiny_engine, tmp_path, max_clients=1, max_parked_slots=3) as srv:
        port = srv.address[1]
        clients = [OscClient(port) for _ in range(4)]
        try:
            for i, each in enumerate(clients):
                each.call("/seqvae/sample", "s1", 0.5, i)
                each.call("/seqvae/sample", "s2", 0.5, i)
            assert len(srv.parked) == 3 and srv.parked.dropped == 3 and srv.client_count == 1
        finally:
            for each in clients:
                each.close()


class BlockedDecodes:
    """Holds the fast lane's thread inside its first decode until released, so the lane fills up."""

    def __init__(self, decode) -> None:
        self.decode = decode
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, z, temperature=0.0, seed=None, chords=None):
        self.entered.set()
        self.release.wait(20)
        return self.decode(z, temperature=temperature, seed=seed, chords=chords)


def test_a_burst_from_one_sender_does_not_make_another_clients_knob_busy(tiny_engine, monkeypatch):
    blocked = BlockedDecodes(tiny_engine.decode)
    monkeypatch.setitem(vars(tiny_engine), "decode", blocked)  # undone by deleting it, not by pinning a bound method
    worker = InferenceWorker(tiny_engine, max_queue=4)
    z = np.zeros((1, tiny_engine.z_size), np.float32)
    results: list = []
    try:
        assert worker.submit(DecodeJob(z, 0.0, None, results.append, owner="first")) is None
        assert blocked.entered.wait(10)  # the lane's thread now holds that job; the queue is empty
        refusals = [worker.submit(DecodeJob(z, 0.5, None, results.append, owner="burst")) for _ in range(10)]
        assert refusals[:4] == [None] * 4
        assert all("4 of your requests are queued" in text for text in refusals[4:])
        assert worker.submit(DecodeJob(z, 0.0, None, results.append, owner="performer")) is None
        for n in range(worker.lane_limit - 5):
            assert worker.submit(DecodeJob(z, 0.5, None, results.append, owner=f"one-shot {n}")) is None
        full = worker.submit(DecodeJob(z, 0.0, None, results.append, owner="late"))
        assert full is not None and f"{worker.lane_limit} requests from all clients" in full
    finally:
        blocked.release.set()
        wait_for(lambda: len(results) == worker.lane_limit + 1)
        worker.close()
    assert all(not isinstance(result, Exception) for result in results)


def test_a_full_table_of_clients_never_let_go_answers_busy(tiny_engine, tmp_path):
    """Clients never let go (with mappings, here) fill the table: a newcomer hears 'busy', nothing is parked."""
    with running_server(tiny_engine, tmp_path, max_clients=1) as srv:
        port = srv.address[1]
        mapper = performer(port)
        mapped = mapper.one("/seqvae/map_osc", "/1/fader1", "/seqvae/morph", "a", "b", "$", "knob")
        assert mapped[0] == "/seqvae/mapped_osc", mapped
        newcomer = OscClient(port)
        try:
            err = newcomer.one("/seqvae/ping", 1)
            assert err[0] == "/seqvae/error" and "busy: 1 clients are active" in err[1][1]
            assert len(srv.parked) == 0 and srv.client_count == 1
            morph_answers(mapper)
        finally:
            newcomer.close()
            mapper.close()
