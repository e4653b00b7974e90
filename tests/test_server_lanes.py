"""Heavy requests never hold up another client's short one: the model lock's fast lane, heavy work
taken in pieces, heavy jobs taking turns, and a knob answered while another client's request runs."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from server_support import OscClient, count_model_rows, notes_of, running_server

from seqvae.engine.model_lock import ModelLock
from seqvae.server.worker import TurnQueue


def _holder(lock: ModelLock, held: threading.Event, release: threading.Event) -> threading.Thread:
    def hold() -> None:
        with lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    return thread


def _waiter(lock: ModelLock, urgent: bool, order: list[str], name: str) -> threading.Thread:
    def wait() -> None:
        if urgent:
            with lock.urgent(), lock:
                order.append(name)
        else:
            with lock:
                order.append(name)

    thread = threading.Thread(target=wait)
    thread.start()
    return thread


def _waiting_until(predicate) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, "the waiter never started waiting"
        time.sleep(0.001)


def test_an_urgent_waiter_takes_the_lock_before_an_ordinary_one_that_waited_longer():
    lock = ModelLock()
    held, release, order = threading.Event(), threading.Event(), []
    holder = _holder(lock, held, release)
    ordinary = _waiter(lock, False, order, "heavy")
    _waiting_until(lambda: lock.waiters() == (0, 1))  # the ordinary waiter is parked first
    urgent = _waiter(lock, True, order, "knob")
    _waiting_until(lambda: lock.waiters() == (1, 1))
    release.set()
    for thread in (holder, ordinary, urgent):
        thread.join(10)
    assert order == ["knob", "heavy"]


def test_the_lock_is_reentrant_and_refuses_a_release_by_another_thread():
    lock = ModelLock()
    with lock, lock:
        errors = []
        thread = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, lock.release)))
        thread.start()
        thread.join(10)
        assert errors
    with lock:  # fully released above: taking it again does not hang
        pass


def test_heavy_jobs_take_turns_between_clients():
    turns = TurnQueue(limit=10)
    for job in ("a1", "a2", "a3"):
        assert turns.put(job, "A")
    assert turns.put("b1", "B")
    assert [turns.get() for _ in range(4)] == ["a1", "b1", "a2", "a3"]


def test_a_full_heavy_lane_refuses_more_work():
    turns = TurnQueue(limit=2)
    assert turns.put(1, "A") and turns.put(2, "B")
    assert not turns.put(3, "C")
    assert len(turns) == 2


def test_heavy_work_takes_the_model_in_pieces_and_urgent_work_in_one(tiny_engine, monkeypatch):
    z = np.random.default_rng(0).standard_normal((9, tiny_engine.z_size)).astype(np.float32)
    whole = tiny_engine.decode_events(z)
    seeded = tiny_engine.decode_events(z, temperature=0.8, seed=5)
    rows = count_model_rows(monkeypatch, tiny_engine)
    monkeypatch.setattr(tiny_engine, "piece_rows", 4)
    np.testing.assert_array_equal(tiny_engine.decode_events(z), whole)
    assert rows == [4, 4, 1]
    rows.clear()
    with tiny_engine.urgent():
        np.testing.assert_array_equal(tiny_engine.decode_events(z), whole)
    assert rows == [9]
    rows.clear()
    np.testing.assert_array_equal(tiny_engine.decode_events(z, temperature=0.8, seed=5), seeded)
    assert rows == [4, 4, 1]  # a seeded sample is cut too: its draws are taken first, so its notes stay
    rows.clear()
    monkeypatch.setattr(tiny_engine, "piece_rows", 1)
    np.testing.assert_array_equal(tiny_engine.decode_events(z, piece_rows=3), whole)  # one call's own pieces
    assert rows == [3, 3, 3]
    monkeypatch.setattr(tiny_engine, "piece_rows", 4)
    rows.clear()
    _, scores = tiny_engine.decode_scored(z, temperature=0.8, seed=5)
    monkeypatch.setattr(tiny_engine, "piece_rows", None)
    np.testing.assert_array_equal(tiny_engine.decode_scored(z, temperature=0.8, seed=5)[1], scores)
    assert rows == [4, 4, 1, 9]


def test_a_knob_is_answered_while_another_clients_heavy_request_runs(tiny_engine, tmp_path, monkeypatch):
    started, release = threading.Event(), threading.Event()

    def slow_novelty(melodies, *args, **kwargs):
        started.set()
        release.wait(20)
        return np.array([1.5])

    with running_server(tiny_engine, tmp_path) as server:
        a = OscClient(server.address[1], "udp")
        b = OscClient(server.address[1], "udp")
        try:
            a.one("/seqvae/sample", "s", 0.5, 1)
            b.one("/seqvae/sample", "x", 0.5, 2)
            b.one("/seqvae/sample", "y", 0.5, 3)
            expected = notes_of(b.one("/seqvae/morph", "x", "y", 0.3))
            monkeypatch.setitem(vars(tiny_engine), "novelty", slow_novelty)  # undone by deleting it
            a.send("/seqvae/novelty", "s")
            a.send("/seqvae/sample", "t", 0.0, 4)  # A's own later reply waits behind its novelty
            assert started.wait(10)
            for _ in range(5):  # B's knob keeps answering while A's request holds the heavy lane
                assert notes_of(b.one("/seqvae/morph", "x", "y", 0.3)) == expected
            assert not release.is_set()
            release.set()
            first, second = a.replies(2)
            assert first == ("/seqvae/novelty", ["s", 1.5])
            assert second[0] == "/seqvae/notes" and second[1][0] == "t"
        finally:
            release.set()
            a.close()
            b.close()


def test_a_long_reply_goes_out_in_slices_and_in_order(tiny_engine, tmp_path):
    """64 interpolation points are 64 slots and messages: sent SEND_SLICE per turn of the loop (other clients'
    requests are read in between), the client's next reply after them all."""
    from seqvae.server.ordering import SEND_SLICE

    with running_server(tiny_engine, tmp_path) as server:
        a = OscClient(server.address[1], "udp")
        try:
            a.one("/seqvae/sample", "x", 0.5, 1)
            a.one("/seqvae/sample", "y", 0.5, 2)
            pauses = server.stats.reply_pauses
            a.send("/seqvae/interpolate", "x", "y", 64, "p")
            a.send("/seqvae/sample", "after", 0.0, 4)
            replies = a.replies(65)
            assert [args[0] for _, args in replies] == [f"p_{i}" for i in range(64)] + ["after"]
            assert server.stats.reply_pauses - pauses == 64 // SEND_SLICE  # the turn after the last slice finds the end
            assert a.one("/seqvae/morph", "p_0", "p_63", 0.5)[0] == "/seqvae/notes"  # every point was stored
        finally:
            a.close()
