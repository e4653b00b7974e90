"""SuperCollider's LinkClock (server/seqvae_link.scd, run by sclang) and `seqvae serve --clock link` in one
Ableton Link session inside a private network namespace: they agree on the tempo, and a tempo change
on either side reaches the other."""

from __future__ import annotations

import json
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from link_peer import in_namespace, serving_in_namespace
from server_support import make_tiny_checkpoint

SCRIPT = Path(__file__).resolve().parent.parent / "server" / "seqvae_link.scd"

# One request to the server in the namespace and its reply as JSON; a plain OSC client, not a Link
# peer, so the session holds only the two programs under test.
_ASK = """
import json, sys
from pythonosc.osc_message import OscMessage
from pythonosc.udp_client import SimpleUDPClient
client = SimpleUDPClient("127.0.0.1", 57130)
client._sock.settimeout(5)
client.send_message(sys.argv[1], [float(a) for a in sys.argv[2:]])
reply = OscMessage(client._sock.recv(65536))
print(json.dumps([reply.address, list(reply.params)]))
"""


def _ask(namespace: str, address: str, *args: float) -> list:
    proc = in_namespace(namespace, [sys.executable, "-c", _ASK, address, *map(str, args)],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    return json.loads(out)


def _server_clock(namespace: str) -> tuple[float, int]:
    """The server's Link tempo (bpm) and peer count, from its /seqvae/clock reply."""
    address, (source, tempo, _beat, _phase, peers, _playing) = _ask(namespace, "/seqvae/clock")
    assert address == "/seqvae/clock" and source == "link"
    return tempo, peers


class _Lines:
    """sclang's output lines as they come, read on a thread so that each wait has a deadline."""

    def __init__(self, stream) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self._queue.put(line.rstrip("\n")) for line in stream], daemon=True).start()

    def step(self, name: str, timeout: float = 25.0) -> tuple[float, int]:
        """Wait for the script's `seqvae link: NAME tempo T peers N` line; (T, N)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if match := re.fullmatch(rf"seqvae link: {name} tempo (\S+) peers (\d+)", line):
                return float(match.group(1)), int(match.group(2))
        raise AssertionError(f"sclang never reported {name!r}; its output:\n" + "\n".join(self.seen[-40:]))


def _wait_for_server_tempo(namespace: str, bpm: float, timeout: float = 10.0) -> float:
    deadline = time.monotonic() + timeout
    while (tempo := _server_clock(namespace)[0]) != pytest.approx(bpm, abs=0.01) and time.monotonic() < deadline:
        time.sleep(0.1)
    return tempo


@pytest.mark.skipif(shutil.which("sclang") is None, reason="SuperCollider (sclang) not installed")
def test_supercollider_link_clock_shares_the_session_tempo(namespace, tmp_path):
    checkpoint = make_tiny_checkpoint(tmp_path / "ckpt")
    # HOME: sclang writes its config there; offscreen Qt: no display. No scsynth: LinkClock needs none.
    env = [f"HOME={tmp_path}", "SEQVAE_SELFTEST=1", "QT_QPA_PLATFORM=offscreen", "QTWEBENGINE_DISABLE_SANDBOX=1"]
    with serving_in_namespace(namespace, checkpoint, tmp_path, "--clock", "link", "--tempo", "97") as banner:
        assert "clock link" in banner
        sclang = in_namespace(namespace, ["env", *env, "sclang", str(SCRIPT)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            lines = _Lines(sclang.stdout)
            tempo, peers = lines.step("joined")  # the LinkClock started at 120, the server at 97: one of the two
            assert peers == 1 and tempo in (pytest.approx(97.0, abs=0.01), pytest.approx(120.0, abs=0.01)), tempo
            assert _wait_for_server_tempo(namespace, tempo) == pytest.approx(tempo, abs=0.01)
            assert _server_clock(namespace)[1] == 1

            assert _ask(namespace, "/seqvae/tempo", 110.0) == ["/seqvae/tempo", [110.0]]  # the server sets it
            assert lines.step("heard")[0] == pytest.approx(110.0, abs=0.01)

            assert lines.step("set")[0] == pytest.approx(131.0, abs=0.01)  # and sclang sets it
            assert _wait_for_server_tempo(namespace, 131.0) == pytest.approx(131.0, abs=0.01)
            assert sclang.wait(15) == 0, "\n".join(lines.seen[-40:])
        finally:
            if sclang.poll() is None:
                sclang.kill()
                sclang.wait(10)
