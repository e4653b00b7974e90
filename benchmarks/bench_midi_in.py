"""MIDI in on a real JACK port (jackd's dummy backend, started here): a played phrase captured note for note at
several tempos, and the time from a CC to its mapped morph's new melody in the slot, against a plain OSC morph's
round trip in the same run.

    python benchmarks/bench_midi_in.py [--model default] [--moves 200]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from seqvae.engine import Engine
from seqvae.server.server import SeqvaeServer, ServerConfig

PORT = "seqvae-bench-in"
PHRASE = [(60, 0.0, 1.0), (62, 1.0, 0.5), (64, 1.5, 0.5), (67, 2.0, 0.75), (65, 2.75, 0.25), (64, 3.0, 1.0)]


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(20)
        self.target = ("127.0.0.1", port)

    def call(self, address: str, *args) -> tuple[str, list]:
        builder = OscMessageBuilder(address)
        for arg in args:
            builder.add_arg(arg)
        self.sock.sendto(builder.build().dgram, self.target)
        return self.receive()

    def receive(self) -> tuple[str, list]:
        msg = OscMessage(self.sock.recv(65536))
        return msg.address, list(msg.params)


def percentiles(ms: list[float]) -> str:
    ms = sorted(ms)
    return f"p50 {statistics.median(ms):.2f} ms, p99 {ms[min(len(ms) - 1, int(len(ms) * 0.99))]:.2f} ms"


def capture(server: SeqvaeServer, client: Client, keys, bpm: float) -> bool:
    server.player.set_tempo(bpm)
    _, (_, _, start) = client.call("/seqvae/record", f"take{bpm:g}", 1)
    for pitch, at, length in PHRASE:
        for status, when in ((0x90, at), (0x80, at + length - 0.05)):
            target = server.player.clock.time_at(start + when)
            while time.perf_counter() < target:
                time.sleep(0.0005)
            keys.send_message([status, pitch, 100 if status == 0x90 else 0])
    address, args = client.receive()
    flat = args[3:]
    got = [(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 4)]
    return address == "/seqvae/notes" and got == PHRASE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--moves", type=int, default=200, help="CC moves and OSC morphs to time")
    args = parser.parse_args()
    import rtmidi
    import torch

    torch.set_num_threads(1)
    name = f"seqvae-bench-{os.getpid()}"
    jack = subprocess.Popen(["jackd", "-n", name, "-d", "dummy", "-r", "48000", "-p", "128"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["MIDO_BACKEND"] = "mido.backends.rtmidi/UNIX_JACK"
    time.sleep(1.0)
    engine = Engine.load(args.model, device="cpu")
    engine.sample(1, seed=0)
    server = SeqvaeServer(engine, ServerConfig(port=0, export_dir=Path("/tmp/seqvae-bench-exports"), midi_in=PORT))
    server.start()
    keys = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="keyboard")
    keys.open_port(next(i for i, n in enumerate(keys.get_ports()) if n.endswith(PORT)))
    try:
        client = Client(server.address[1])
        for bpm in (90.0, 120.0, 160.0):
            print(f"capture at {bpm:g} bpm: {'note for note' if capture(server, client, keys, bpm) else 'DIFFERENT'}")
        client.call("/seqvae/sample", "a", 0.5, 1)
        client.call("/seqvae/sample", "b", 0.5, 2)
        osc = []
        for i in range(args.moves):
            t0 = time.perf_counter()
            client.call("/seqvae/morph", "a", "b", (i % 100) / 100, "m")
            osc.append((time.perf_counter() - t0) * 1000)
        client.call("/seqvae/map_cc", 1, 1, "/seqvae/morph", "a", "b", "$", "knob")
        owner = next(c for c in server.clients.clients.values() if "a" in c.slots)
        cc = []
        for i in range(args.moves):
            before = owner.slots.get("knob")
            t0 = time.perf_counter()
            keys.send_message([0xB0, 1, (i * 37) % 128])
            while owner.slots.get("knob") is before:
                time.sleep(0.0002)
            cc.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.005)
        print(f"OSC /seqvae/morph round trip ({args.moves}): {percentiles(osc)}")
        print(f"CC -> morph stored in the slot ({args.moves}): {percentiles(cc)}")
    finally:
        keys.close_port()
        server.stop()
        jack.terminate()
        jack.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
