"""Robustness of the OSC server: fuzzing, the bad-request table, and a bounded load test with memory.

    python benchmarks/fuzz_osc.py                                # 100,000 datagrams, 2,000 TCP streams, 60 s load
    python benchmarks/fuzz_osc.py --datagrams 20000 --streams 500 --load-seconds 20 --model RUN/model

1. Fuzz: random datagrams, mutated valid requests (flipped bytes, cut or padded packets, wrong type
   tags, NaN/inf/huge numbers, odd slot names and paths) and random bundles (nested, bad sizes,
   timetags past, near and far), from several sockets; then TCP streams mixing OSC 1.0 and 1.1
   framing with garbage, huge size prefixes and half frames. After every 10,000 datagrams and
   at the end, a fresh client must get its /seqvae/pong.
2. Bad requests: every request of tests/test_server.py's table against the live server, with
   the error it answers (a Markdown table for the README).
3. Load: several client processes for a fixed time doing what performers do (sample, morph,
   XY pad, variations, inline notes, exports, status); the server's resident memory is sampled
   every second and must stay flat after warm-up.

Traffic goes only to 127.0.0.1, every loop is bounded in count and time, and the server is a
`seqvae serve` subprocess stopped at the end.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import random
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_osc import REPO, ServerProcess, UdpClient, prepare_model

from seqvae.server.osc import encode_bundle, encode_message, parse_packet, size_prefix_encode, slip_encode

sys.path.insert(0, str(REPO / "tests"))

SLOT_NAMES = ["a", "b", "c", "d", "m", "", "x" * 80, "a b", "ü", "../a", "1", "\t"]
FILENAMES = ["take.mid", "../up.mid", "/etc/x.mid", "a/../../b", "sub/ok", "C:\\x", "~/x", "", "x" * 300, "é.mid"]
NUMBERS = [0, 1, -1, 2**31 - 1, -(2**31), 0.5, 1.0, -0.0, 1e9, 1e30, math.nan, math.inf, -math.inf, 3.7, 64, 65]


def valid_requests() -> list[tuple[str, list]]:
    """One well-formed request per address (the seeds the mutations start from)."""
    return [
        ("/seqvae/ping", [1]), ("/seqvae/status", []), ("/seqvae/sample", ["a", 0.5]), ("/seqvae/sample", ["b"]),
        ("/seqvae/encode", ["e", 2, 60, 0.0, 1.0, 100, 64, 1.0, 0.5, 90]), ("/seqvae/encode_file", ["f", "take.mid"]),
        ("/seqvae/interpolate", ["a", "b", 4, "p"]), ("/seqvae/morph", ["a", "b", 0.3]),
        ("/seqvae/morph_xy", ["a", "b", "a", "b", 0.2, 0.7]), ("/seqvae/similar", ["a", 0.3]),
        ("/seqvae/shift", ["a", "density", 1.0]), ("/seqvae/novelty", ["a"]), ("/seqvae/export", ["a", "take.mid"]),
        ("/seqvae/export_all", ["p", "all.mid"]), ("/seqvae/tempo", [120.0]), ("/seqvae/play", ["a", 0]),
        ("/seqvae/stop", []), ("/seqvae/clear", ["m"]), ("/seqvae/note_target", ["127.0.0.1", 9]),
    ]


def random_arg(rng: random.Random):
    kind = rng.random()
    if kind < 0.35:
        return rng.choice(NUMBERS)
    if kind < 0.55:
        return rng.choice(SLOT_NAMES)
    if kind < 0.65:
        return rng.choice(FILENAMES)
    if kind < 0.8:
        return rng.randint(-(2**31), 2**31 - 1)
    if kind < 0.9:
        return rng.uniform(-1e3, 1e3)
    return "".join(chr(rng.randint(32, 0x2FF)) for _ in range(rng.randint(0, 40)))


def encode_loose(address: str, args: list) -> bytes:
    """Like encode_message, but lets NaN, inf and out-of-range ints through as a fuzzer wants."""
    tags, body = [","], []
    for arg in args:
        if isinstance(arg, float):
            tags.append("f")
            body.append(struct.pack(">f", arg))
        elif isinstance(arg, int) and -(2**31) <= arg < 2**31:
            tags.append("i")
            body.append(struct.pack(">i", arg))
        elif isinstance(arg, int):
            tags.append("h")
            body.append(struct.pack(">q", max(min(arg, 2**63 - 1), -(2**63))))
        else:
            raw = str(arg).encode("utf-8")
            tags.append("s")
            body.append(raw + b"\x00" * (4 - len(raw) % 4))
    head = encode_message(address)[: -4]  # address without its empty type tag string
    tag = "".join(tags).encode()
    return head + tag + b"\x00" * (4 - len(tag) % 4) + b"".join(body)


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.3 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op < 0.45 and buf:
            del buf[rng.randrange(len(buf)):]
        elif op < 0.6:
            buf += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif op < 0.75:
            comma = buf.find(b",")
            if comma >= 0 and comma + 1 < len(buf):
                buf[comma + 1] = ord(rng.choice("ifsbhdtTFNcSIm[]xyz"))
        elif op < 0.85 and buf:
            start = rng.randrange(len(buf))
            buf[start:start] = buf[start : start + rng.randint(1, 16)]
        else:
            buf[:0] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(buf)


def fuzz_datagram(rng: random.Random, seeds: list[tuple[str, list]]) -> bytes:
    kind = rng.random()
    if kind < 0.2:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 1500)))
    address, args = rng.choice(seeds)
    if kind < 0.6:
        return mutate(encode_loose(address, args), rng)
    if kind < 0.85:
        junk = [random_arg(rng) for _ in range(rng.randint(0, 10))]
        if address == "/seqvae/encode" and rng.random() < 0.5:
            junk = ["e", rng.choice([0, 1, 3, 1000, 10**9])] + [random_arg(rng) for _ in range(rng.randint(0, 12))]
        return encode_loose(address, junk)
    return fuzz_bundle(rng, seeds, depth=0)


def fuzz_bundle(rng: random.Random, seeds: list[tuple[str, list]], depth: int) -> bytes:
    elements = []
    for _ in range(rng.randint(0, 5)):
        if depth < 10 and rng.random() < 0.25:
            elements.append(fuzz_bundle(rng, seeds, depth + 1))
        else:
            address, args = rng.choice(seeds)
            elements.append(encode_loose(address, args))
    when = rng.choice([None, time.time() - 5, time.time() + rng.random() * 0.5, time.time() + 1e6])
    packet = encode_bundle(elements, when)
    return mutate(packet, rng) if rng.random() < 0.3 else packet


def _drain(sock: socket.socket, counter: list[int], stop: threading.Event) -> None:
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            sock.recv(65536)
            counter[0] += 1
        except (TimeoutError, OSError):
            continue


def alive(port: int, timeout: float = 60.0) -> float:
    """Seconds until a fresh client gets its pong; the ping is resent each second, since a server still
    working through a flood may have had its receive buffer full when the first one came (UDP drops it)."""
    client = UdpClient(port, timeout=1.0)
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < timeout:
            try:
                address, args = client.call("/seqvae/ping", "alive?")
            except TimeoutError:
                continue
            if address == "/seqvae/pong" and args[0] == "alive?":
                return time.perf_counter() - started
            raise SystemExit(f"server answered {address} {args} to a ping")
    finally:
        client.close()
    raise TimeoutError(f"no pong in {timeout:g} s")


def fuzz_datagrams(port: int, count: int, seed: int) -> None:
    rng = random.Random(seed)
    seeds = valid_requests()
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
    replies = [0]
    stop = threading.Event()
    drains = [threading.Thread(target=_drain, args=(s, replies, stop), daemon=True) for s in sockets]
    for thread in drains:
        thread.start()
    started = time.perf_counter()
    try:
        for i in range(count):
            sock = sockets[i % len(sockets)]
            try:
                sock.sendto(fuzz_datagram(rng, seeds), ("127.0.0.1", port))
            except OSError:  # e.g. a mutated packet over the UDP size limit
                pass
            if i % 200 == 199:
                time.sleep(0.002)  # bounded pace: the server's receive buffer is not the thing under test
            if (i + 1) % 10000 == 0:
                wait = alive(port)
                print(f"  {i + 1:7d} datagrams, {replies[0]:7d} replies so far, ping answered in {wait * 1000:.1f} ms",
                      flush=True)
    finally:
        stop.set()
        for thread in drains:
            thread.join(1)
        for sock in sockets:
            sock.close()
    print(f"datagrams: {count} sent in {time.perf_counter() - started:.1f} s, {replies[0]} replies received")


def fuzz_streams(port: int, count: int, seed: int) -> None:
    rng = random.Random(seed)
    seeds = valid_requests()
    started = time.perf_counter()
    for _ in range(count):
        framing = rng.choice(["size", "slip", "garbage"])
        parts = []
        for _ in range(rng.randint(1, 6)):
            packet = fuzz_datagram(rng, seeds) if rng.random() < 0.7 else encode_message("/seqvae/ping", [1])
            roll = rng.random()
            if framing == "garbage" or roll < 0.1:
                parts.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))))
            elif roll < 0.15:
                parts.append(struct.pack(">i", rng.choice([0, -1, 2**31 - 1, 10**6])) + packet)
            elif framing == "size":
                parts.append(size_prefix_encode(packet))
            else:
                parts.append(slip_encode(packet))
        stream = b"".join(parts)
        if rng.random() < 0.2:
            stream = stream[: rng.randrange(len(stream) + 1)]  # a half frame, then hang up
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                cut = 0
                while cut < len(stream):
                    step = rng.randint(1, 512)
                    conn.sendall(stream[cut : cut + step])
                    cut += step
                if rng.random() < 0.5:
                    conn.settimeout(0.05)
                    try:
                        conn.recv(65536)
                    except (TimeoutError, OSError):
                        pass
        except OSError:
            pass
    wait = alive(port)
    print(f"TCP streams: {count} in {time.perf_counter() - started:.1f} s; ping answered in {wait * 1000:.1f} ms")


def bad_request_table(port: int, export_dir: Path) -> int:
    from server_support import build  # python-osc's builder: T, blobs and int64 as a real client sends them
    from test_server import BAD_PACKETS, BAD_REQUESTS

    export_dir.mkdir(parents=True, exist_ok=True)
    (export_dir / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02" + bytes(range(256)) * 4)
    (export_dir / "huge.mid").write_bytes(b"MThd" + b"\x00" * (5 * 1024 * 1024))
    client = UdpClient(port)
    client.call("/seqvae/sample", "a", 0.5, 1)
    client.call("/seqvae/sample", "b", 0.5, 2)
    rows, failures = [], 0
    for address, args, needle in BAD_REQUESTS:
        shown_args = " ".join(_show(a) for a in args)
        client.sock.sendto(build(address, args).dgram, client.addr)
        reply = parse_packet(client.sock.recv(65536))[0]
        request = f"`{address} {shown_args}`".replace("  ", " ")
        if needle.startswith("no attribute vectors") and reply.address != "/seqvae/error":
            rows.append((request, "(not bad for this model: it has attribute vectors, so the shift was answered)"))
            continue
        ok = reply.address == "/seqvae/error" and needle in reply.args[1]
        failures += not ok
        rows.append((request, reply.args[1] if len(reply.args) > 1 else reply))
    for packet, _address, needle in BAD_PACKETS:
        client.sock.sendto(packet, client.addr)
        reply = parse_packet(client.sock.recv(65536))[0]
        ok = reply.address == "/seqvae/error" and needle in reply.args[1]
        failures += not ok
        rows.append((f"raw packet `{packet[:24]!r}`{'...' if len(packet) > 24 else ''} ({len(packet)} bytes)",
                     reply.args[1]))
    client.close()
    print(f"\nbad requests: {len(rows)}, each answered by /seqvae/error ({failures} unexpected)\n")
    print("| request | /seqvae/error message |")
    print("| --- | --- |")
    for request, message in rows:
        print(f"| {request.replace('|', '/')} | {str(message).replace('|', '/')} |")
    return failures


def _show(arg) -> str:
    if isinstance(arg, str):
        return f'"{arg[:20]}{"..." if len(arg) > 20 else ""}"'
    if isinstance(arg, bytes):
        return f"blob({len(arg)})"
    return repr(arg)


def _load_worker(port: int, seconds: float, worker: int, out: mp.Queue) -> None:
    rng = random.Random(worker)
    client = UdpClient(port, timeout=30)
    counts: dict[str, int] = {}
    end = time.time() + seconds
    client.call("/seqvae/sample", "a", 0.5)
    client.call("/seqvae/sample", "b", 0.5)
    while time.time() < end:
        roll = rng.random()
        if roll < 0.35:
            request = ("/seqvae/morph", "a", "b", rng.random(), f"m{rng.randrange(8)}")
        elif roll < 0.5:
            request = ("/seqvae/morph_xy", "a", "b", "m0", "m1", rng.random(), rng.random())
        elif roll < 0.65:
            request = ("/seqvae/sample", rng.choice("ab"), rng.uniform(0, 1))
        elif roll < 0.75:
            request = ("/seqvae/similar", "a", rng.random(), "v")
        elif roll < 0.85:
            notes = [v for i in range(8) for v in (60 + rng.randrange(12), i * 0.5, 0.5, 90)]
            request = ("/seqvae/encode", "e", 8, *notes)
        elif roll < 0.9:
            request = ("/seqvae/export", "m0", f"load/w{worker}_{rng.randrange(4)}.mid")
        elif roll < 0.95:
            request = ("/seqvae/interpolate", "a", "b", 4, "walk")
        else:
            request = ("/seqvae/status",)
        client.sock.sendto(encode_message(request[0], list(request[1:])), client.addr)
        first = parse_packet(client.sock.recv(65536))[0]
        if first.address == "/seqvae/error":
            counts["errors"] = counts.get("errors", 0) + 1
        elif request[0] == "/seqvae/interpolate":
            for _ in range(3):
                client.sock.recv(65536)
        counts[request[0]] = counts.get(request[0], 0) + 1
    client.close()
    out.put(counts)


def load_test(server: ServerProcess, clients: int, seconds: float) -> bool:
    out: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_load_worker, args=(server.port, seconds, w, out)) for w in range(clients)]
    samples: list[tuple[float, float]] = []
    started = time.time()
    for proc in procs:
        proc.start()
    while any(proc.is_alive() for proc in procs) and time.time() - started < seconds + 60:
        samples.append((time.time() - started, server.rss_mb()))
        time.sleep(1.0)
    totals: dict[str, int] = {}
    for _ in procs:
        for key, value in out.get(timeout=60).items():
            totals[key] = totals.get(key, 0) + value
    for proc in procs:
        proc.join(10)
    requests = sum(totals.values())
    print(f"\nload: {clients} clients for {seconds:g} s, {requests} requests ({requests / seconds:.0f}/s): "
          + ", ".join(f"{k.rsplit('/', 1)[-1]} {v}" for k, v in sorted(totals.items())))
    print("server RSS (MB) over time:")
    step = max(1, len(samples) // 12)
    print("  " + "  ".join(f"{t:4.0f}s {rss:6.1f}" for t, rss in samples[::step]))
    warm = [rss for t, rss in samples if t >= min(10.0, seconds / 3)]
    if len(warm) < 2:
        print("  too short to judge memory")
        return True
    growth = warm[-1] - warm[0]
    flat = growth <= max(10.0, 0.05 * warm[0])
    print(f"  after warm-up: {warm[0]:.1f} -> {warm[-1]:.1f} MB (max {max(warm):.1f}), growth {growth:+.1f} MB: "
          f"{'flat' if flat else 'GROWING'}")
    return flat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="model to serve (default: the shipped default)")
    parser.add_argument("--random-config", default="tiny_lstm",
                        help="config with random weights when the default model is missing (tiny_lstm)")
    parser.add_argument("--datagrams", type=int, default=100_000)
    parser.add_argument("--streams", type=int, default=2_000)
    parser.add_argument("--load-clients", type=int, default=6)
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        model, described = prepare_model(args.model, args.random_config, Path(scratch))
        export_dir = Path(scratch) / "exports"
        server = ServerProcess(model, export_dir, threads=1)
        print(f"model: {described}\n{server.banner}")
        try:
            rss_start = server.rss_mb()
            fuzz_datagrams(server.port, args.datagrams, args.seed)
            fuzz_streams(server.port, args.streams, args.seed + 1)
            print(f"server RSS {rss_start:.1f} MB before fuzzing, {server.rss_mb():.1f} MB after; "
                  f"still running: {server.proc.poll() is None}")
            failures = bad_request_table(server.port, export_dir)
        except BaseException:
            if server.proc.poll() is None:
                os.kill(server.pid, signal.SIGUSR1)  # the server prints its threads' stacks
                time.sleep(1)
            print(f"server log, last lines:\n{server.log_tail(80)}")
            raise
        finally:
            server.stop()
        server = ServerProcess(model, export_dir, threads=1)
        try:
            flat = load_test(server, args.load_clients, args.load_seconds)
            alive(server.port)
        finally:
            server.stop()
    ok = failures == 0 and flat
    print(f"\n{'PASS' if ok else 'FAIL'}: no crash, every bad request answered, memory {'flat' if flat else 'growing'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
