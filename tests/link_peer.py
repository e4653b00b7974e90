"""A real Ableton Link peer for the clock tests and the sync benchmark, always inside a private network namespace.

Link finds its peers by multicast; in a namespace of our own (loopback only, with a multicast
route on it) that traffic never reaches the host's network. On the host side, `private_namespace()`
makes one and deletes it afterwards, `in_namespace()` starts a command in it, `serving_in_namespace()`
runs `seqvae serve` there and `NamespacePeer` starts this file there. In the namespace, this file is
a Link peer at a tempo, a listener for `/seqvae/note` events that measures each onset against its
own 16th-note grid the moment it arrives, and an OSC client of the seqvae server running next to
it. It takes one JSON command per line on stdin and answers one JSON line each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# ---- the host side ------------------------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@contextlib.contextmanager
def private_namespace(prefix: str = "seqvae") -> Iterator[str]:
    """A fresh network namespace with loopback up and multicast routed to it; deleted on the way out."""
    name = f"{prefix}-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"
    _ip("netns", "add", name)
    try:
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "multicast", "on")
        _ip("netns", "exec", name, "ip", "route", "add", "224.0.0.0/4", "dev", "lo")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def namespace_problem() -> str | None:
    """Why a private namespace can't be made here (None when it can): Link must never run on the host network."""
    if shutil.which("ip") is None:
        return "the `ip` tool (iproute2) is not installed"
    try:
        with private_namespace("seqvae-probe"):
            return None
    except subprocess.CalledProcessError as exc:
        return f"`ip netns` failed ({(exc.stderr or '').strip() or exc}); it needs root or CAP_SYS_ADMIN"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns` failed ({exc})"


def in_namespace(namespace: str, argv: list[str], **popen: object) -> subprocess.Popen:
    """Start argv inside the namespace, with this repository importable."""
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.Popen(["ip", "netns", "exec", namespace, *argv], cwd=REPO, env=env, **popen)  # type: ignore[arg-type]


@contextlib.contextmanager
def serving_in_namespace(namespace: str, checkpoint: Path, log_dir: Path, *extra: str) -> Iterator[str]:
    """`seqvae serve` on port 57130 inside the namespace while the block runs; its banner. Stopped by SIGINT."""
    with open(log_dir / "serve.log", "w") as log:
        proc = in_namespace(namespace, [sys.executable, "-m", "seqvae.cli.main", "serve", "--model", str(checkpoint),
                                        "--port", "57130", "--threads", "1", "--export-dir", str(log_dir / "out"),
                                        *extra], stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        banner = proc.stdout.readline()
        if "OSC on udp+tcp 127.0.0.1:57130" not in banner:
            raise RuntimeError(f"seqvae serve did not start: {(log_dir / 'serve.log').read_text()}")
        yield banner
    finally:
        stop_server(proc)


def stop_server(proc: subprocess.Popen) -> None:
    """Ctrl-C, as a musician stops it; killed if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class NamespacePeer:
    """This file as a Link peer inside `namespace`; `ask(cmd, ...)` sends one command and returns its answer."""

    def __init__(self, namespace: str, tempo: float, quantum: float = 4.0) -> None:
        self.proc = in_namespace(namespace, [sys.executable, __file__, "--tempo", str(tempo), "--quantum",
                                             str(quantum)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.note_port = self._answer()["note_port"]

    def _answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the Link peer exited (code {self.proc.poll()})")
        return json.loads(line)

    def ask(self, cmd: str, **args: object) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def osc(self, port: int, address: str, *args: object, replies: int = 1, timeout: float = 20.0) -> list:
        """Send a request to the server at 127.0.0.1:port in the namespace; its replies as [address, args]."""
        return self.ask("osc", port=port, address=address, args=list(args), replies=replies,
                        timeout=timeout)["replies"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("quit")
            except (OSError, ValueError, RuntimeError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# ---- the peer, inside the namespace -------------------------------------------------------------


class Peer:
    def __init__(self, tempo: float, quantum: float) -> None:
        import link

        self.quantum = quantum
        self.link = link.Link(tempo)
        self.clock = self.link.clock()
        self.link.enabled = True
        # [arrival perf time, pitch, error ms against the 16th grid (positive: late), tempo, phase in the bar]
        self.onsets: list[list[float]] = []
        self.lock = threading.Lock()
        self.notes = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.notes.bind(("127.0.0.1", 0))
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.bind(("127.0.0.1", 0))
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        from seqvae.server.osc import parse_packet
        from seqvae.server.player import realtime_priority

        realtime_priority()  # the onsets measure the server, not this process's wait for a core

        while True:
            data = self.notes.recv(65536)
            micros, arrived = self.clock.micros(), time.perf_counter()
            state = self.link.captureAppSessionState()
            for message in parse_packet(data):
                if message.address != "/seqvae/note":
                    continue
                phase = state.phaseAtTime(micros, self.quantum)
                off = phase * 4 - round(phase * 4)  # in 16ths
                tempo = state.tempo()
                with self.lock:
                    self.onsets.append([arrived, message.args[1], off * 15000.0 / tempo, tempo, phase])

    def state(self) -> dict:
        state = self.link.captureAppSessionState()
        now = self.clock.micros()
        return {"peers": self.link.numPeers(), "tempo": state.tempo(), "beat": state.beatAtTime(now, self.quantum),
                "phase": state.phaseAtTime(now, self.quantum), "playing": state.isPlaying(),
                "sync": self.link.startStopSyncEnabled, "perf": time.perf_counter()}

    def handle(self, cmd: dict) -> dict:
        from seqvae.server.osc import encode_message, parse_packet

        kind = cmd["cmd"]
        if kind == "tempo":
            state = self.link.captureAppSessionState()
            state.setTempo(float(cmd["bpm"]), self.clock.micros())
            self.link.commitAppSessionState(state)
        elif kind == "sync":
            self.link.startStopSyncEnabled = bool(cmd["on"])
        elif kind == "transport":
            state = self.link.captureAppSessionState()
            state.setIsPlaying(bool(cmd["playing"]), self.clock.micros())
            self.link.commitAppSessionState(state)
        elif kind == "onsets":
            with self.lock:
                onsets, self.onsets = self.onsets, []
            return {"onsets": onsets}
        elif kind == "osc":
            self.client.sendto(encode_message(cmd["address"], cmd["args"]), ("127.0.0.1", int(cmd["port"])))
            self.client.settimeout(float(cmd["timeout"]))
            replies = []
            for _ in range(int(cmd["replies"])):
                try:
                    replies += [[m.address, list(m.args)] for m in parse_packet(self.client.recv(65536))]
                except TimeoutError:
                    break
            return {"replies": replies}
        return self.state()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tempo", type=float, default=97.0)
    parser.add_argument("--quantum", type=float, default=4.0)
    args = parser.parse_args()
    peer = Peer(args.tempo, args.quantum)
    print(json.dumps({"note_port": peer.notes.getsockname()[1]}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        print(json.dumps(peer.handle(cmd)), flush=True)
    peer.link.enabled = False


if __name__ == "__main__":
    main()
