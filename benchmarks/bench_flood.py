"""Does other traffic cost a performer their knob or their slots? Morph round trips of a performer, alone and
while a flood of connections and one-shot senders hits the same server.

    python benchmarks/bench_flood.py                       # the shipped default model, 10 s per condition
    python benchmarks/bench_flood.py --seconds 20 --json runs/flood.json

The server is a real `seqvae serve` subprocess (2 torch threads) on 127.0.0.1 with its default limits. The
performer (UDP) stores melodies in 8 slots, then turns a morph knob at --knob-hz, one request in flight at a
time. The flood is another process on the same machine: every --wave-every seconds it tops up
--connections TCP connections (half of them silent, half stopped in the middle of a packet, size-prefixed
or SLIP; the server refuses those over its per-host cap and closes the rest when they time out) and sends
--one-shots requests from as many fresh UDP sockets (a /seqvae/sample each, as `oscsend` would). Printed:
the performer's p50/p99/max round trip, its errors and 'busy' answers, whether its slots survived (the
same morphs give the same notes after the flood), and what happened to the flood.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import resource
import selectors
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_osc import ServerProcess, UdpClient, _percentile, paced, prepare_model  # noqa: E402

from seqvae.server.osc import encode_message, parse_packet  # noqa: E402

SLOTS = [f"s{i}" for i in range(8)]
CHECKS = [("s0", "s1", 0.3), ("s2", "s5", 0.7), ("s6", "s7", 0.5)]  # morphs compared before and after


def raise_file_limit(wanted: int) -> int:
    """Let this process hold `wanted` sockets (the soft limit is often 1024); the limit it got."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


HALF_PACKETS = (b"\x00\x00\x01\x00/seqvae/morph\x00\x00\x00",  # a 256-byte packet announced, 20 bytes sent
                b"\xc0/seqvae/morph\x00\x00\x00,ss")  # a SLIP frame never ended


def flood(port: int, connections: int, one_shots: int, wave_every: float, start_at: float, stop_at: float,
          out: mp.Queue) -> None:
    """Waves of TCP connections that never send a whole request, and bursts of one-shot UDP requests."""
    limit = raise_file_limit(connections + one_shots + 64)
    selector = selectors.DefaultSelector()
    open_now: set[socket.socket] = set()
    counts = {"fd_limit": limit, "opened": 0, "connect_failed": 0, "closed_by_server": 0,
              "one_shots": 0, "one_shot_notes": 0, "one_shot_busy": 0, "one_shot_other": 0, "one_shot_silent": 0}
    while time.time() < start_at:
        time.sleep(0.01)
    wave = 0
    while time.time() < stop_at:
        for _ in range(connections - len(open_now)):  # top up what the server refused or closed
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                counts["connect_failed"] += 1
                continue
            counts["opened"] += 1
            if counts["opened"] % 2:
                try:
                    sock.sendall(HALF_PACKETS[(counts["opened"] // 2) % 2])
                except OSError:
                    pass
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            open_now.add(sock)
        senders = []
        for i in range(one_shots):
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sender.sendto(encode_message("/seqvae/sample", [f"w{wave}_{i}", 0.5]), ("127.0.0.1", port))
            senders.append(sender)
        counts["one_shots"] += len(senders)
        wave += 1
        next_wave = time.time() + wave_every
        for sender in senders:  # each one-shot's answer, if it comes within the wave
            sender.settimeout(max(0.01, next_wave - time.time()))
            try:
                reply = parse_packet(sender.recv(65536))[0]
            except (TimeoutError, OSError):
                counts["one_shot_silent"] += 1
            else:
                if reply.address == "/seqvae/notes":
                    counts["one_shot_notes"] += 1
                elif "busy" in str(reply.args[-1:]):
                    counts["one_shot_busy"] += 1
                else:
                    counts["one_shot_other"] += 1
            sender.close()
        while time.time() < next_wave:
            for key, _ in selector.select(timeout=max(0.0, min(0.1, next_wave - time.time()))):
                sock = key.fileobj
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    counts["closed_by_server"] += 1
                    selector.unregister(sock)
                    sock.close()
                    open_now.discard(sock)
    counts["open_at_end"] = len(open_now)
    for sock in open_now:
        sock.close()
    out.put(counts)


def store_slots(client: UdpClient) -> None:
    for n, name in enumerate(SLOTS):
        address, _ = client.call("/seqvae/sample", name, 0.5, 100 + n)
        if address != "/seqvae/notes":
            raise SystemExit(f"the performer could not fill slot {name}: {address}")


def check_notes(client: UdpClient) -> list:
    """The notes of fixed morphs between the performer's slots: equal before and after iff the slots survived."""
    return [client.call("/seqvae/morph", a, b, t, "check") for a, b, t in CHECKS]


def knob(client: UdpClient, seconds: float, hz: float, seed: int) -> dict:
    """Morph round trips (ms) at `hz` on the performer's slots; errors and busy answers counted."""
    rng = random.Random(seed)
    times, errors, busy, examples = [], 0, 0, []
    for _ in paced(seconds, hz):
        started = time.perf_counter()
        a, b = rng.sample(SLOTS, 2)
        try:
            address, args = client.call("/seqvae/morph", a, b, rng.random(), "knob")
        except TimeoutError:
            address, args = "timeout", ("no reply within 10 s",)
        times.append((time.perf_counter() - started) * 1000)
        if address != "/seqvae/notes":
            errors += 1
            busy += "busy" in str(args[-1])
            if len(examples) < 3:
                examples.append(f"{address} {args[-1]}")
    return {"n": len(times), "p50_ms": _percentile(times, 0.5), "p99_ms": _percentile(times, 0.99),
            "max_ms": max(times), "errors": errors, "busy": busy, "examples": examples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--seconds", type=float, default=10.0, help="per condition (alone, then flooded)")
    parser.add_argument("--knob-hz", type=float, default=75.0)
    parser.add_argument("--connections", type=int, default=1000, help="TCP connections the flood keeps opening")
    parser.add_argument("--one-shots", type=int, default=100, help="one-shot UDP senders per wave")
    parser.add_argument("--wave-every", type=float, default=2.0, help="seconds between the flood's waves")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="seqvae_flood_"))
    model, described = prepare_model(args.model, "mel_2bar_small", scratch)
    server = ServerProcess(model, scratch / "exports")
    print(f"model {described}; {server.banner}")
    print(f"performer: morph at {args.knob_hz:g} Hz over UDP on {len(SLOTS)} slots, {args.seconds:g} s per "
          f"condition; flood: {args.connections} TCP connections (half silent, half half-sent) and "
          f"{args.one_shots} one-shot UDP senders every {args.wave_every:g} s\n")
    results: dict = {}
    try:
        client = UdpClient(server.port, timeout=10)
        store_slots(client)
        for _ in range(30):  # warm-up
            client.call("/seqvae/morph", "s0", "s1", random.random(), "knob")
        before = check_notes(client)
        results["alone"] = knob(client, args.seconds, args.knob_hz, seed=0)
        out: mp.Queue = mp.Queue()
        start_at = time.time() + 0.5
        flooder = mp.Process(target=flood, args=(server.port, args.connections, args.one_shots, args.wave_every,
                                                 start_at, start_at + args.seconds + 1.0, out))
        flooder.start()
        time.sleep(max(0.0, start_at - time.time()) + 0.5)  # the first wave is on its way
        results["flood"] = knob(client, args.seconds, args.knob_hz, seed=1)
        results["flood_traffic"] = out.get(timeout=120 + args.seconds)
        flooder.join(30)
        after = check_notes(client)
        address, status = client.call("/seqvae/status")
        names = set(status[5:5 + int(status[2])]) if address == "/seqvae/status" else set()
        results["slots_survived"] = before == after and set(SLOTS) <= names
        results["server_log"] = [line for line in server.log_tail(200).splitlines() if "seqvae.server" in line][-6:]
        client.close()
    finally:
        server.stop()

    print(f"{'condition':<12}{'n':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}{'busy':>6}")
    for name in ("alone", "flood"):
        row = results[name]
        print(f"{name:<12}{row['n']:>7}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['max_ms']:>9.2f}"
              f"{row['errors']:>8}{row['busy']:>6}")
        for example in row["examples"]:
            print(f"    e.g. {example}")
    ratio = results["flood"]["p99_ms"] / max(results["alone"]["p99_ms"], 1e-9)
    results["p99_ratio"] = ratio
    print(f"\np99 flooded / alone: {ratio:.2f}x")
    print(f"slots survived: {'yes' if results['slots_survived'] else 'NO'} ({len(SLOTS)} slots; "
          f"{len(CHECKS)} fixed morphs give the same notes before and after)")
    traffic = results["flood_traffic"]
    print(f"flood: {traffic['opened']} connections opened ({traffic['connect_failed']} failed to connect), "
          f"{traffic['closed_by_server']} closed by the server, {traffic['open_at_end']} open at the end; "
          f"{traffic['one_shots']} one-shot requests: {traffic['one_shot_notes']} answered with notes, "
          f"{traffic['one_shot_busy']} busy, {traffic['one_shot_other']} another error, "
          f"{traffic['one_shot_silent']} unanswered within their wave")
    for line in results["server_log"]:
        print(f"server: {line}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": described, "knob_hz": args.knob_hz, "seconds": args.seconds,
                                         "connections": args.connections, "one_shots": args.one_shots,
                                         "results": results}, indent=2))
    return 0 if results["slots_survived"] else 1


if __name__ == "__main__":
    sys.exit(main())
