"""In time with the band: how far `/seqvae/note` onsets land from a shared clock's grid.

    python benchmarks/bench_sync.py [--model default] [--seconds 8] [--clients 4] [--knob-hz 100]

Ableton Link (needs root for `ip netns` and the `link` extra): `seqvae serve --clock link --latency 0` and a real
Link peer (tests/link_peer.py) run inside a private network namespace, so Link's multicast never leaves it. The
peer times each onset the moment it arrives against its own 16th-note grid at quantum 4: idle, then while
`--clients` other clients each turn a morph knob at `--knob-hz` (a request, wait for its reply, the next one at the
next period), then after the peer moves the session from 97 to 131 bpm (how long until the server follows, and
until every onset is back within 2 ms of the grid).

MIDI clock (jackd's dummy backend, started here): a drum machine on a JACK port sends 24 ticks per quarter to
`seqvae serve --clock midi:PORT --latency 0`; printed are the server's tempo error 2 beats after the clock starts
or changes tempo, and each onset against the tick it belongs to (from Start, every sixth tick is a 16th), idle
and with the same morphing clients.

Errors are in ms, positive when late. Everything runs as separate processes, as on stage.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from seqvae.server.player import realtime_priority

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the Link peer, its namespace helpers and the drum machine: with the tests

from drum_machine import DrumMachine  # noqa: E402
from link_peer import NamespacePeer, namespace_problem, private_namespace, serving_in_namespace, stop_server  # noqa: E402

PORT = 57130
MIDI_CLOCK_PORT = "seqvae-bench-clock"
HAND_OVER_S = 0.01  # longer than JACK takes to hand a MIDI event over (a period or two)
SETTLED_ONSETS = 8  # "back on the grid": this many onsets in a row within GRID_MS
GRID_MS = 2.0  # the bar: p99 within 2 ms, and "back on the grid" after a tempo change


def sixteenths(steps: int) -> list:
    """`/seqvae/encode` arguments of a melody with a note on every 16th of the window (a scale up and down)."""
    shape = [0, 2, 4, 5, 7, 9, 11, 12, 11, 9, 7, 5, 4, 2]
    args: list = ["a", steps]
    for i in range(steps):
        args += [60 + shape[i % len(shape)], i * 0.25, 0.2, 90]
    return args


def summary(errors_ms: list[float]) -> str:
    if not errors_ms:
        return "no onsets"
    size = sorted(abs(e) for e in errors_ms)
    p99 = size[min(len(size) - 1, int(0.99 * len(size)))]
    return (f"{len(size):4d} onsets  |err| p50 {statistics.median(size):5.2f}  p99 {p99:5.2f}  max {size[-1]:5.2f} ms"
            f"  (mean {statistics.fmean(errors_ms):+5.2f} ms)")


def p99(errors_ms: list[float]) -> float:
    size = sorted(abs(e) for e in errors_ms)
    return size[min(len(size) - 1, int(0.99 * len(size)))] if size else float("inf")


# ---- the morphing clients (run as their own process; inside the namespace for Link) ------------------------------


def knob_clients(port: int, clients: int, hz: float, seconds: float) -> dict:
    """`clients` UDP clients, each with two slots of its own, turning a morph knob at `hz` for `seconds`."""
    from seqvae.server.osc import encode_message, parse_packet

    times: list[float] = []
    lock = threading.Lock()
    problems: list[str] = []

    def one(index: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(5)

        def call(address: str, *args: object) -> str:
            sock.sendto(encode_message(address, list(args)), ("127.0.0.1", port))
            reply = parse_packet(sock.recv(65536))[0]
            return reply.address if reply.address != "/seqvae/error" else f"{reply.address} {list(reply.args)}"

        for slot, base in (("x", 60), ("y", 67)):
            call("/seqvae/encode", slot, 4, *[v for i in range(4) for v in (base + 2 * i + index, i, 1.0, 90)])
        period, mine = 1.0 / hz, []
        start = time.perf_counter()
        n = 0
        while time.perf_counter() < start + seconds:
            sent = time.perf_counter()
            try:
                address = call("/seqvae/morph", "x", "y", (n % 64) / 63.0, "knob")
            except TimeoutError:
                problems.append(f"client {index}: no reply in 5 s")
                break
            if address != "/seqvae/notes":
                problems.append(f"client {index}: {address}")
            mine.append((time.perf_counter() - sent) * 1000)
            n += 1
            time.sleep(max(0.0, start + n * period - time.perf_counter()))
        with lock:
            times.extend(mine)
        sock.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"round_trips_ms": times, "problems": problems[:5]}


def knob_summary(result: dict) -> str:
    ms = sorted(result["round_trips_ms"])
    if not ms:
        return f"no morphs came back {result['problems']}"
    return (f"{len(ms)} morphs, round trip p50 {statistics.median(ms):.2f} ms, "
            f"p99 {ms[min(len(ms) - 1, int(0.99 * len(ms)))]:.2f} ms" + (f"; {result['problems']}"
                                                                          if result["problems"] else ""))


def knob_process(argv_prefix: list[str], port: int, args: argparse.Namespace, seconds: float) -> subprocess.Popen:
    command = [sys.executable, __file__, "--knob-load", str(port), "--clients", str(args.clients), "--knob-hz",
               str(args.knob_hz), "--seconds", str(seconds)]
    return subprocess.Popen([*argv_prefix, *command], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))


def midi_serve_argv(args: argparse.Namespace, port: int) -> list[str]:
    return [sys.executable, "-m", "seqvae.cli.main", "serve", "--model", args.model, "--port", str(port),
            "--clock", f"midi:{MIDI_CLOCK_PORT}", "--clock-delay", str(args.clock_delay), "--latency", "0",
            "--export-dir", str(Path(args.scratch) / "exports")]


def wait_for(predicate, timeout: float, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(every)
    return value


# ---- Ableton Link -------------------------------------------------------------------------------------------------


def bench_link(args: argparse.Namespace) -> dict | None:
    try:
        import link  # noqa: F401
    except ImportError:
        print('Link: skipped, the link extra is not installed (pip install "seqvae[link]")')
        return None
    problem = namespace_problem()
    if problem:
        print(f"Link: skipped, Link runs only inside a private network namespace and none can be made: {problem}")
        return None
    scratch = Path(args.scratch)
    with private_namespace("seqvae-bench") as namespace:
        peer = NamespacePeer(namespace, tempo=97.0)
        try:
            with serving_in_namespace(namespace, Path(args.model), scratch, "--threads", "2", "--clock", "link",
                                      "--latency", "0"):
                def clock() -> list:
                    return peer.osc(PORT, "/seqvae/clock")[0][1]  # source tempo beat phase peers playing

                if not wait_for(lambda: clock()[4] == 1 and abs(clock()[1] - 97.0) < 0.01, timeout=20):
                    raise RuntimeError(f"the server never joined the peer's session: {clock()}")
                peer.osc(PORT, "/seqvae/encode", *sixteenths(args.steps))
                peer.osc(PORT, "/seqvae/note_target", "127.0.0.1", peer.note_port)
                peer.osc(PORT, "/seqvae/play", "a", 1)
                time.sleep(3.0)  # the voice starts on the next bar; let it settle
                peer.ask("onsets")
                time.sleep(args.seconds)
                idle = [o[2] for o in peer.ask("onsets")["onsets"]]
                print(f"Link idle (97 bpm)             {summary(idle)}")

                knobs = knob_process(["ip", "netns", "exec", namespace], PORT, args, args.seconds + 2.0)
                time.sleep(1.0)
                peer.ask("onsets")
                time.sleep(args.seconds)
                loaded = [o[2] for o in peer.ask("onsets")["onsets"]]
                load = json.loads(knobs.communicate(timeout=60)[0])
                print(f"Link, {args.clients} clients morphing  {summary(loaded)}")
                print(f"    the knobs: {knob_summary(load)}")

                peer.ask("onsets")
                changed_at = peer.ask("tempo", bpm=131.0)["perf"]
                followed = wait_for(lambda: abs(clock()[1] - 131.0) < 0.01, timeout=10, every=0.001)
                followed_s = time.perf_counter() - changed_at
                time.sleep(args.seconds / 2)
                after = peer.ask("onsets")["onsets"]
                settled = next((i for i in range(len(after))
                                if all(abs(o[2]) <= GRID_MS for o in after[i:i + SETTLED_ONSETS])), None)
                settle_beats = None
                if settled is not None:
                    settle_beats = max((after[settled][0] - changed_at) * 131.0 / 60.0, 0.0)
                first_beat = [o[2] for o in after if o[0] - changed_at <= 60.0 / 131.0]
                steady = [o[2] for o in after if o[0] - changed_at > 60.0 / 131.0]
                print(f"Link 97 -> 131 bpm: the server's tempo followed in {followed_s * 1000:.0f} ms"
                      f"{'' if followed else ' (NOT within 10 s)'}; from "
                      + (f"{settle_beats:.2f} beats after the change" if settle_beats is not None else "nowhere")
                      + f" {SETTLED_ONSETS} onsets in a row were within {GRID_MS:g} ms")
                print(f"    onsets in the beat after the change    {summary(first_beat)}")
                print(f"    onsets from one beat after the change  {summary(steady)}")
                figures = {"idle": idle, "loaded": loaded, "knobs": load, "follow_ms": followed_s * 1000,
                           "settle_beats": settle_beats, "after_change": steady}
        finally:
            peer.close()
    return figures


# ---- MIDI clock -----------------------------------------------------------------------------------------------------


class NoteListener:
    """Arrival times of `/seqvae/note` on a UDP socket, stamped first thing."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.arrivals: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        realtime_priority()  # time the server, not this process's wait for a core behind the load
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            at = time.perf_counter()
            if data.startswith(b"/seqvae/note\x00"):
                with self._lock:
                    self.arrivals.append(at)

    def take(self) -> list[float]:
        with self._lock:
            out, self.arrivals = self.arrivals, []
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def tick_errors(arrivals: list[float], drum: DrumMachine) -> list[float]:
    """Each onset against the nearest 16th tick (every sixth tick from Start) that has been sent, in ms."""
    grid = drum.ticks()[drum.start_tick::6]
    errors = []
    for at in arrivals:
        nearest = min(grid, key=lambda t: abs(at - t))
        errors.append((at - nearest) * 1000)
    return errors


@contextmanager
def jackd(period: int):
    name = f"seqvae-bench-sync-{os.getpid()}"
    proc = subprocess.Popen(["jackd", "-n", name, "-d", "dummy", "-r", "48000", "-p", str(period)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        yield name
    finally:
        proc.terminate()
        proc.wait(10)


def bench_midi(args: argparse.Namespace) -> dict | None:
    from seqvae.server.osc import encode_message, parse_packet

    try:
        import mido  # noqa: F401
        import rtmidi  # noqa: F401
    except ImportError:
        print("MIDI clock: skipped, mido and python-rtmidi are not installed")
        return None
    with jackd(args.jack_period) as jack:
        os.environ["JACK_DEFAULT_SERVER"] = jack
        os.environ["MIDO_BACKEND"] = "mido.backends.rtmidi/UNIX_JACK"
        port = PORT + 1
        log = open(Path(args.scratch) / "serve-midi.log", "w")
        server = subprocess.Popen(midi_serve_argv(args, port), cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=log, text=True)
        listener = NoteListener()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(20)
        drum = None

        def call(address: str, *osc_args: object) -> list:
            sock.sendto(encode_message(address, list(osc_args)), ("127.0.0.1", port))
            return parse_packet(sock.recv(65536))[0].args

        try:
            if f"127.0.0.1:{port}" not in server.stdout.readline():
                raise RuntimeError(f"seqvae serve did not start: {(Path(args.scratch) / 'serve-midi.log').read_text()}")
            period_ms = args.jack_period / 48.0
            print(f"MIDI clock over JACK (dummy backend, {args.jack_period}-frame periods: {period_ms:.2f} ms), "
                  f"seqvae serve --clock-delay {args.clock_delay:g}")
            tempo_errors = []
            drum = DrumMachine(MIDI_CLOCK_PORT, 97.0)
            for bpm in (97.0, 131.0, 120.0):
                changed = drum.tempo(bpm)
                wait_for(lambda: len(drum.ticks()) >= changed + 2 * 24, timeout=10, every=0.0005)  # noqa: B023
                time.sleep(HAND_OVER_S)  # the last tick sent is through JACK
                tempo = float(call("/seqvae/clock")[1])
                tempo_errors.append(abs(tempo - bpm))
                print(f"    2 beats after the clock {'started' if bpm == 97.0 else 'changed'} at {bpm:g} bpm: "
                      f"the server says {tempo:.3f} bpm (error {abs(tempo - bpm):.3f} bpm)")
            call("/seqvae/encode", *sixteenths(args.steps))
            call("/seqvae/note_target", "127.0.0.1", listener.sock.getsockname()[1])
            call("/seqvae/play", "a", 1)
            drum.send("start")
            time.sleep(2.0)
            listener.take()
            time.sleep(args.seconds)
            idle = tick_errors(listener.take(), drum)
            print(f"MIDI clock idle (120 bpm)      {summary(idle)}")
            knobs = knob_process([], port, args, args.seconds + 2.0)
            time.sleep(1.0)
            listener.take()
            time.sleep(args.seconds)
            loaded = tick_errors(listener.take(), drum)
            load = json.loads(knobs.communicate(timeout=60)[0])
            print(f"MIDI clock, {args.clients} clients morphing {summary(loaded)}")
            print(f"    the knobs: {knob_summary(load)}")
            said = (Path(args.scratch) / "serve-midi.log").read_text()
            print(f"    the server's log, whole run: {said.count('was lost on the way')} ticks counted as lost, "
                  f"{said.count('left out of it')} stalls left out of the fit, "
                  f"{said.count('the fit starts afresh')} fit restarts (jumps, pauses, Start)")
            return {"tempo_errors_bpm": tempo_errors, "idle": idle, "loaded": loaded, "knobs": load,
                    "jack_period_ms": period_ms}
        finally:
            if drum is not None:
                drum.close()
            stop_server(server)
            log.close()
            listener.close()
            sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int, default=32, help="16ths in the model's window (default 32: 2 bars)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of onsets per measurement")
    parser.add_argument("--clients", type=int, default=4, help="other clients turning a morph knob")
    parser.add_argument("--knob-hz", type=float, default=100.0, help="each knob's requests per second")
    parser.add_argument("--jack-period", type=int, default=128, help="JACK frames per period at 48 kHz")
    parser.add_argument("--clock-delay", type=float, default=0.0, metavar="MS",
                        help="seqvae serve --clock-delay for the MIDI clock (default 0)")
    parser.add_argument("--only", choices=("link", "midi"), help="run one of the two")
    parser.add_argument("--scratch", default="/tmp/seqvae-bench-sync")
    parser.add_argument("--knob-load", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the morphing clients
    parser.add_argument("--json", type=Path, help="also write every error here")
    args = parser.parse_args()
    if args.knob_load:
        print(json.dumps(knob_clients(args.knob_load, args.clients, args.knob_hz, args.seconds)))
        return 0
    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    print("$ python benchmarks/bench_sync.py " + " ".join(sys.argv[1:]))
    results = {}
    if args.only in (None, "link"):
        results["link"] = bench_link(args)
    if args.only in (None, "midi"):
        results["midi"] = bench_midi(args)
    verdicts = []
    if results.get("link"):
        link_r = results["link"]
        settle = "never" if link_r["settle_beats"] is None else f"{link_r['settle_beats']:.2f} beats"
        verdicts.append(f"Link p99 idle {p99(link_r['idle']):.2f} / loaded {p99(link_r['loaded']):.2f} ms "
                        f"(<= {GRID_MS:g}); back on the grid {settle} after 97 -> 131 (<= 1)")
    if results.get("midi"):
        midi_r = results["midi"]
        verdicts.append(f"MIDI clock tempo error {max(midi_r['tempo_errors_bpm']):.3f} bpm (<= 0.5); onset p99 "
                        f"idle {p99(midi_r['idle']):.2f} / loaded {p99(midi_r['loaded']):.2f} ms (<= {GRID_MS:g})")
    for line in verdicts:
        print(line)
    if args.json:
        args.json.write_text(json.dumps(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
