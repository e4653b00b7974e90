"""OSC server speed: UDP round trips on loopback, and throughput of 4 concurrent clients with and
without micro-batching.

    python benchmarks/bench_osc.py                     # the shipped default model, else mel_2bar_small (random)
    python benchmarks/bench_osc.py --model RUN/model --requests 2000 --seconds 10 --json runs/bench_osc.json

The server runs as a real `seqvae serve` subprocess with 2 torch threads; clients are separate
processes speaking plain UDP, so client and server never share an interpreter lock. A round trip
is send -> reply fully received, measured by the client. Targets (issue 5): /seqvae/morph p50 <=
2 ms and p99 <= 5 ms, /seqvae/sample p50 <= 3 ms, on the default model on CPU.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from seqvae.server.osc import encode_message, parse_packet  # noqa: E402


def prepare_model(model: str, random_config: str, scratch: Path) -> tuple[str, str]:
    """(checkpoint to serve, description): the named model if installed, else random weights of a config."""
    from seqvae.models.checkpoint import shipped_models

    if model != "default" or "default" in shipped_models():
        return model, model
    import torch

    from seqvae.models import build_model, get_config, save_model

    torch.manual_seed(0)
    directory = scratch / random_config
    save_model(build_model(get_config(random_config)), directory)
    return str(directory), f"{random_config} (random weights: the default model is not installed)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`seqvae serve` in a subprocess, started and stopped with the benchmark."""

    def __init__(self, model: str, export_dir: Path, *extra: str, threads: int = 2, device: str = "cpu") -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "seqvae.cli.main", "serve", "--model", model, "--port", str(self.port),
               "--export-dir", str(export_dir), "--threads", str(threads), "--device", device, *extra]
        self.log_path = Path(tempfile.mkstemp(prefix="seqvae_serve_", suffix=".log")[1])
        self._log = open(self.log_path, "w")  # a file, not a pipe: a full pipe would stall the server
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while "OSC on" not in self.log_path.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        self.banner = self.log_path.read_text().strip().splitlines()[0]

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
        self.log_path.unlink(missing_ok=True)


class UdpClient:
    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.addr = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)

    def call(self, address: str, *args) -> tuple[str, tuple]:
        self.send(address, *args)
        return self.receive()

    def send(self, address: str, *args) -> None:
        self.sock.sendto(encode_message(address, list(args)), self.addr)

    def receive(self) -> tuple[str, tuple]:
        msg = parse_packet(self.sock.recv(65536))[0]
        return msg.address, msg.args

    def close(self) -> None:
        self.sock.close()


@dataclass
class Latency:
    request: str
    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    target_p50_ms: float | None
    target_p99_ms: float | None


def paced(seconds: float, hz: float) -> Iterator[None]:
    """Yield at `hz` for `seconds`, as a knob turns; ticks missed while the caller waited follow at once."""
    period = 1.0 / hz
    next_at = time.perf_counter()
    end = next_at + seconds
    while next_at < end:
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield
        next_at += period


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure_latency(port: int, request: str, n: int, seed: int = 0) -> list[float]:
    client = UdpClient(port)
    rng = random.Random(seed)
    client.call("/seqvae/sample", "a", 0.5, 1)
    client.call("/seqvae/sample", "b", 0.5, 2)
    times = []
    for i in range(n + 50):
        args = ("a", "b", rng.random()) if request == "/seqvae/morph" else ("s", 0.5)
        started = time.perf_counter()
        address, _ = client.call(request, *args)
        elapsed = time.perf_counter() - started
        if address != "/seqvae/notes":
            raise SystemExit(f"{request} answered {address}")
        if i >= 50:  # warm-up
            times.append(elapsed * 1000)
    client.close()
    return times


def _latency_worker(port: int, request: str, n: int, out: mp.Queue) -> None:
    out.put(measure_latency(port, request, n))


def measure_overhead(model: str, request: str, n: int) -> tuple[list[float], list[float]]:
    """(round trips through a server whose model answers instantly, the model's own decode times).

    The first isolates what the server adds (parse, dispatch, latent blend, two thread hand-offs,
    reply encoding, UDP); the second is engine.decode of one latent in this process, 2 threads.
    """
    import numpy as np
    import torch

    from seqvae.engine import Engine
    from seqvae.server import SeqvaeServer, ServerConfig

    torch.set_num_threads(2)
    engine = Engine.load(model, device="cpu")
    temperature = 0.0 if request == "/seqvae/morph" else 0.5
    z = np.random.default_rng(0).standard_normal((1, engine.z_size)).astype(np.float32)
    model_ms = []
    for i in range(n + 50):
        started = time.perf_counter()
        engine.decode(z, temperature=temperature)
        if i >= 50:
            model_ms.append((time.perf_counter() - started) * 1000)
    answer = engine.decode(z)
    engine.decode = lambda z, temperature=0.0, seed=None, **_: answer * len(z)  # the model costs nothing now
    with tempfile.TemporaryDirectory() as exports:
        server = SeqvaeServer(engine, ServerConfig(port=0, export_dir=Path(exports)))
        _, port = server.start()
        try:
            ctx = mp.get_context("spawn")
            out = ctx.Queue()
            proc = ctx.Process(target=_latency_worker, args=(port, request, n, out))
            proc.start()
            server_ms = out.get(timeout=300)
            proc.join(10)
        finally:
            server.stop()
    return server_ms, model_ms


def _throughput_worker(port: int, request: str, seconds: float, start_at: float, out: mp.Queue) -> None:
    client = UdpClient(port)
    client.call("/seqvae/sample", "a", 0.5, 1)
    client.call("/seqvae/sample", "b", 0.5, 2)
    rng = random.Random(os.getpid())
    while time.time() < start_at:
        time.sleep(0.001)
    done = 0
    end = start_at + seconds
    while time.time() < end:
        args = ("a", "b", rng.random()) if request == "/seqvae/morph" else ("s", 0.5)
        client.call(request, *args)
        done += 1
    out.put(done)
    client.close()


def measure_throughput(port: int, request: str, clients: int, seconds: float) -> float:
    out: mp.Queue = mp.Queue()
    start_at = time.time() + 1.0
    procs = [mp.Process(target=_throughput_worker, args=(port, request, seconds, start_at, out))
             for _ in range(clients)]
    for proc in procs:
        proc.start()
    total = sum(out.get(timeout=seconds + 60) for _ in procs)
    for proc in procs:
        proc.join(10)
    return total / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="model to serve (default: the shipped default)")
    parser.add_argument("--random-config", default="mel_2bar_small",
                        help="config with random weights when the default model is missing (mel_2bar_small)")
    parser.add_argument("--requests", type=int, default=1000, help="round trips per request type (1000)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients for throughput (4)")
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each throughput run (8)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        model, described = prepare_model(args.model, args.random_config, Path(scratch))
        print(f"model: {described}; CPU, 2 torch threads; {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores; python {platform.python_version()}")
        latencies: list[Latency] = []
        split: dict[str, dict[str, float]] = {}
        throughput: dict[str, dict[str, float]] = {}
        server = ServerProcess(model, Path(scratch) / "exports")
        try:
            print(server.banner)
            for request, t50, t99 in (("/seqvae/morph", 2.0, 5.0), ("/seqvae/sample", 3.0, None)):
                times = measure_latency(server.port, request, args.requests)
                latencies.append(Latency(request, len(times), _percentile(times, 0.5), _percentile(times, 0.9),
                                         _percentile(times, 0.99), sum(times) / len(times), t50, t99))
            for request in ("/seqvae/morph", "/seqvae/sample"):
                throughput.setdefault(request, {})["batched"] = measure_throughput(
                    server.port, request, args.clients, args.seconds)
                throughput[request]["single_client"] = measure_throughput(server.port, request, 1, args.seconds)
        finally:
            server.stop()
        plain = ServerProcess(model, Path(scratch) / "exports", "--no-batching")
        try:
            for request in ("/seqvae/morph", "/seqvae/sample"):
                throughput[request]["unbatched"] = measure_throughput(plain.port, request, args.clients, args.seconds)
        finally:
            plain.stop()
        for request in ("/seqvae/morph", "/seqvae/sample"):
            server_ms, model_ms = measure_overhead(model, request, args.requests)
            split[request] = {
                "server_p50_ms": _percentile(server_ms, 0.5), "server_p99_ms": _percentile(server_ms, 0.99),
                "model_p50_ms": _percentile(model_ms, 0.5), "model_p99_ms": _percentile(model_ms, 0.99),
            }

    print(f"\nUDP round trip on loopback ({args.requests} requests each, after 50 warm-up):")
    print(f"{'request':16s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} {'mean ms':>8s}  target")
    for lat in latencies:
        target = f"p50 <= {lat.target_p50_ms:g}" + (f", p99 <= {lat.target_p99_ms:g}" if lat.target_p99_ms else "")
        ok = lat.p50_ms <= lat.target_p50_ms and (lat.target_p99_ms is None or lat.p99_ms <= lat.target_p99_ms)
        print(f"{lat.request:16s} {lat.p50_ms:8.2f} {lat.p90_ms:8.2f} {lat.p99_ms:8.2f} {lat.mean_ms:8.2f}  "
              f"{target} {'ok' if ok else 'MISSED'}")
    print("\nwhere the time goes: the server with a model that answers instantly, and the model's decode alone:")
    print(f"{'request':16s} {'server p50':>11s} {'server p99':>11s} {'model p50':>10s} {'model p99':>10s}")
    for request, row in split.items():
        print(f"{request:16s} {row['server_p50_ms']:11.2f} {row['server_p99_ms']:11.2f} {row['model_p50_ms']:10.2f} "
              f"{row['model_p99_ms']:10.2f}")
    print(f"\nthroughput, replies/s ({args.seconds:g} s runs; each client waits for its reply before the next):")
    print(f"{'request':16s} {'1 client':>10s} {f'{args.clients} clients':>12s} {'unbatched':>10s} {'gain':>6s}")
    for request, row in throughput.items():
        gain = row["batched"] / row["unbatched"] if row["unbatched"] else float("nan")
        print(f"{request:16s} {row['single_client']:10.0f} {row['batched']:12.0f} {row['unbatched']:10.0f} "
              f"{gain:5.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": described, "latency": [asdict(x) for x in latencies],
                                         "split": split, "throughput": throughput, "clients": args.clients}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
