"""Does one performer's heavy request stall another's knob? Morph round trips of client B, alone and while
client A loops each heavy request.

    python benchmarks/bench_stalls.py                      # the shipped default model, 10 s per condition
    python benchmarks/bench_stalls.py --seconds 20 --only infill,novelty --json runs/stalls.json

The server is a real `seqvae serve` subprocess (--threads torch threads, 2 by default). A and B are separate
processes on UDP. B turns a morph knob at --knob-hz, one request in flight at a time, and times each round trip;
A sends its heavy request, waits for the reply and sends it again. Target (issue 17): B's p99 <= 5 ms
on the 2-bar model whatever A runs. B's first 2 s after sampling its endpoints are timed apart: the server
decodes those turns while it fills the pair's morph table (seqvae/server/morph_tables.py); the columns after
them are answered from the table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_osc import ServerProcess, UdpClient, _percentile, paced, prepare_model  # noqa: E402

LONG_FILE_BARS = 400
WARM_SECONDS = 2.0  # B's first turns after sampling its endpoints, reported apart


def heavy_requests(midi_path: str) -> dict[str, tuple]:
    """What A loops: each the heaviest of its kind a client can send."""
    return {
        "infill": ("/seqvae/infill", "a", 1, 1, "f"),
        "novelty": ("/seqvae/novelty", "a"),
        "interpolate64": ("/seqvae/interpolate", "a", "b", 64, "p"),
        "encode_file": ("/seqvae/encode_file", "f", midi_path, 0, LONG_FILE_BARS - 2),
        "export": ("/seqvae/export", "a", "take.mid"),
    }


def write_long_file(path: Path, bars: int = LONG_FILE_BARS) -> None:
    """A one-track 4/4 line of `bars` bars of 8ths: reading it costs what a long song costs."""
    import mido

    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    rng = random.Random(0)
    for _ in range(bars * 8):
        pitch = rng.randint(60, 76)
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=240))
    midi.save(path)


def heavy_loop(port: int, request: tuple, stop_at: float, out: mp.Queue) -> None:
    """Client A: fill its slots, then send `request` back to back until `stop_at`."""
    client = UdpClient(port, timeout=30)
    client.call("/seqvae/sample", "a", 0.5, 11)
    client.call("/seqvae/sample", "b", 0.5, 12)
    times, replies = [], set()
    while time.time() < stop_at:
        started = time.perf_counter()
        client.send(*request)
        expected = 64 if request[0] == "/seqvae/interpolate" else 1
        for _ in range(expected):  # an interpolation answers one /seqvae/notes per point
            address, args = client.receive()
            replies.add(address)
            if address == "/seqvae/error":
                break
        times.append((time.perf_counter() - started) * 1000)
    client.close()
    out.put((times, sorted(replies)))


def knob(port: int, seconds: float, hz: float, seed: int) -> tuple[list[float], list[float], int]:
    """Client B: morph round trips (ms) at `hz` for the first WARM_SECONDS after new endpoints (the server decodes
    them while it fills the pair's morph table) and for `seconds` after that, and how many answered something else."""
    client = UdpClient(port, timeout=10)
    client.call("/seqvae/sample", "x", 0.5, 1)
    client.call("/seqvae/sample", "y", 0.5, 2)
    rng = random.Random(seed)
    phases: list[list[float]] = [[], []]
    errors = 0
    for phase, duration in enumerate((WARM_SECONDS, seconds)):
        for _ in paced(duration, hz):
            started = time.perf_counter()
            address, _ = client.call("/seqvae/morph", "x", "y", rng.random())
            phases[phase].append((time.perf_counter() - started) * 1000)
            errors += address != "/seqvae/notes"
    client.close()
    return phases[1], phases[0], errors


def summary(times: list[float]) -> dict:
    return {"n": len(times), "p50_ms": _percentile(times, 0.5), "p99_ms": _percentile(times, 0.99),
            "max_ms": max(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--seconds", type=float, default=10.0, help="per condition")
    parser.add_argument("--knob-hz", type=float, default=100.0)
    parser.add_argument("--only", default="", help="comma-separated heavy requests (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="seqvae_stalls_"))
    model, described = prepare_model(args.model, "mel_2bar_small", scratch)
    long_file = scratch / "long.mid"
    write_long_file(long_file)
    requests = heavy_requests(str(long_file))
    chosen = [name for name in args.only.split(",") if name] or list(requests)
    unknown = set(chosen) - set(requests)
    if unknown:
        parser.error(f"--only {','.join(sorted(unknown))}: choose from {','.join(requests)}")

    server = ServerProcess(model, scratch / "exports", threads=args.threads)
    print(f"model {described}; {server.banner}")
    print(f"B: morph at {args.knob_hz:g} Hz, {args.seconds:g} s per condition; target p99 <= 5 ms\n")
    print(f"{'A loops':<16}{'A p50 ms':>10}{'B p50':>9}{'B p99':>9}{'B max':>9}{'first 2s p99':>14}{'B errors':>10}")
    results = {}
    try:
        for name in ["alone", *chosen]:
            out: mp.Queue = mp.Queue()
            heavy = None
            if name != "alone":
                stop_at = time.time() + args.seconds + 2.0
                heavy = mp.Process(target=heavy_loop, args=(server.port, requests[name], stop_at, out))
                heavy.start()
                time.sleep(1.5)  # A's slots are filled and its loop is running
            times, warm, errors = knob(server.port, args.seconds, args.knob_hz, seed=len(results))
            row = {"knob": summary(times), "knob_first_2s": summary(warm), "knob_errors": errors}
            a_p50 = ""
            if heavy is not None:
                a_times, replies = out.get(timeout=120)
                heavy.join()
                row["heavy"] = summary(a_times) | {"replies": replies}
                a_p50 = f"{row['heavy']['p50_ms']:.1f}"
            results[name] = row
            k = row["knob"]
            print(f"{name:<16}{a_p50:>10}{k['p50_ms']:>9.2f}{k['p99_ms']:>9.2f}{k['max_ms']:>9.2f}"
                  f"{row['knob_first_2s']['p99_ms']:>14.2f}{errors:>10}", flush=True)
    finally:
        server.stop()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": described, "knob_hz": args.knob_hz, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
