"""The client kits against the real programs: liblo's oscsend/oscdump, Pure Data running
server/seqvae.pd headless, and sclang running server/seqvae.scd. Each program is installed by
.ci/run (apt); a machine without it skips that test. The Max patch and Sonic Pi snippet cannot
run here: their files are checked for shape only."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from server_support import running_server

KITS = Path(__file__).resolve().parent.parent / "server"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(path: Path, pattern: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if re.search(pattern, text, re.MULTILINE):
            return text
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} never appeared; got:\n{text}")


@pytest.mark.skipif(shutil.which("oscsend") is None or shutil.which("oscdump") is None,
                    reason="liblo-tools (oscsend, oscdump) not installed")
def test_liblo_oscsend_and_oscdump(tiny_engine, tmp_path):
    reply_port = _free_port()
    dump = tmp_path / "oscdump.txt"
    with running_server(tiny_engine, tmp_path / "exports", reply_port=reply_port) as srv, \
            open(dump, "w") as out:
        dumper = subprocess.Popen(["oscdump", "-L", str(reply_port)], stdout=out, stderr=subprocess.STDOUT)
        try:
            port = str(srv.address[1])

            def oscsend(*args: str, url: str | None = None) -> None:
                target = [url] if url else ["localhost", port]
                subprocess.run(["oscsend", *target, *args], check=True, timeout=10)

            deadline = time.monotonic() + 10
            while "pong" not in dump.read_text() and time.monotonic() < deadline:  # oscdump is listening
                oscsend("/seqvae/ping", "s", "hello")
                time.sleep(0.2)
            oscsend("/seqvae/sample", "sfi", "a", "0.5", "1")
            oscsend("/seqvae/sample", "sfi", "b", "0.0", "2")
            oscsend("/seqvae/morph", "ssf", "a", "b", "0.5")  # a fresh sender each time: one client via the reply port
            oscsend("/seqvae/ping", "i", "9", url=f"osc.tcp://localhost:{port}")  # liblo TCP: OSC 1.0 framing
            oscsend("/seqvae/morph", "ssf", "a", "nope", "0.5")
            oscsend("/seqvae/export", "ss", "morph", "liblo_take")
            text = _wait_for(dump, r"/seqvae/exported ss \"morph\"")
        finally:
            dumper.terminate()
            dumper.wait(10)
    lines = text.splitlines()
    notes = [line for line in lines if " /seqvae/notes " in line]
    assert [re.search(r'"(\w+)"', line).group(1) for line in notes] == ["a", "b", "morph"]
    for line in notes:
        types, *values = line.split(" ", 2)[2].split(" ")
        assert types.startswith("sfi") and set(types[3:]) <= {"i", "f"}  # no T/F/N/arrays for liblo
        assert len(values) == len(types) and int(values[2]) * 4 == len(types) - 3
    assert any(re.search(r"/seqvae/pong is+ 9 ", line) for line in lines)
    assert any("/seqvae/error ss \"/seqvae/morph\" \"slot 'nope' is empty" in line for line in lines)
    assert (tmp_path / "exports" / "liblo_take.mid").is_file()


DRIVER = """#N canvas 0 50 450 300 12;
#X obj 20 20 loadbang;
#X obj 20 45 del 300;
#X obj 20 70 t b b;
#X msg 120 95 \\; seqvae connect 127.0.0.1 {port} \\; seqvae listen {listen};
#X obj 20 100 del 300;
#X obj 20 125 t b b;
#X msg 120 150 \\; seqvae ping 7 \\; seqvae sample a 0.5 1 \\; seqvae sample b 0 2 \\; seqvae morph a b 0.5 \\; \
seqvae morph a b 1.5 \\; seqvae tempo 300 \\; seqvae play morph 0 \\; seqvae status;
#X obj 20 160 del 2500;
#X msg 20 185 \\; pd quit;
#X connect 0 0 1 0;
#X connect 1 0 2 0;
#X connect 2 1 3 0;
#X connect 2 0 4 0;
#X connect 4 0 5 0;
#X connect 5 1 6 0;
#X connect 5 0 7 0;
#X connect 7 0 8 0;
"""


@pytest.mark.skipif(shutil.which("pd") is None, reason="Pure Data (puredata-core) not installed")
def test_pure_data_patch(tiny_engine, tmp_path):
    with running_server(tiny_engine, tmp_path) as srv:
        driver = tmp_path / "driver.pd"
        driver.write_text(DRIVER.format(port=srv.address[1], listen=_free_port()))
        run = subprocess.run(["pd", "-nogui", "-noaudio", "-nomidi", "-stderr", "-open", str(KITS / "seqvae.pd"),
                              "-open", str(driver)], capture_output=True, text=True, timeout=60)
    printed = [line for line in run.stderr.splitlines() if line.startswith(("seqvae:", "seqvae-error:"))]
    assert "seqvae: pong 7 " + tiny_engine.model_name + " 0.1.0" in printed[:4], run.stderr
    by_slot = {}
    for line in printed:
        match = re.match(r"seqvae: notes (\w+) (\S+) (\d+)((?: \S+)*)$", line)
        if match:
            by_slot[match.group(1)] = (float(match.group(2)), int(match.group(3)), match.group(4).split())
    assert set(by_slot) == {"a", "b", "morph"}, printed
    for bpm, count, values in by_slot.values():
        assert bpm == 120 and len(values) == 4 * count
    # Pd sent every number as a float (seed 1, t 0.5): accepted; the bad t got a readable error
    assert any(line.startswith("seqvae-error: /seqvae/morph t\\ must\\ be\\ a\\ number") for line in printed), printed
    # the server played the morph back to Pd as live note events
    assert sum(line.startswith("seqvae: note morph ") for line in printed) >= 3, printed
    assert any(re.match(r"seqvae: status \S+ cpu 3 300 ", line) for line in printed), printed


@pytest.mark.skipif(shutil.which("sclang") is None, reason="SuperCollider (sclang) not installed")
def test_supercollider_script(tiny_engine, tmp_path):
    with running_server(tiny_engine, tmp_path) as srv:
        env = dict(os.environ, SEQVAE_PORT=str(srv.address[1]), SEQVAE_SELFTEST="1", QT_QPA_PLATFORM="offscreen",
                   QTWEBENGINE_DISABLE_SANDBOX="1")
        run = subprocess.run(["sclang", str(KITS / "seqvae.scd")], capture_output=True, text=True, timeout=120,
                             env=env, stdin=subprocess.DEVNULL, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert f"seqvae: server answers: [ 1, {tiny_engine.model_name}, 0.1.0 ]" in out
    counts = dict(re.findall(r"seqvae: (\w+) has (\d+) notes at 120.0 bpm", out))
    assert set(counts) == {"a", "b", "knob"}
    events = int(re.search(r"seqvae selftest: knob events (\d+)", out).group(1))
    assert events >= int(counts["knob"])  # every note, plus rests where there are gaps
    assert "seqvae selftest ok" in out


def test_max_patch_and_sonic_pi_snippet_are_well_formed():
    patch = json.loads((KITS / "seqvae.maxpat").read_text())
    boxes = [box["box"] for box in patch["patcher"]["boxes"]]
    texts = [box.get("text", "") for box in boxes]
    assert any(t.startswith("udpsend 127.0.0.1 57130") for t in texts)
    assert any(t.startswith("udpreceive") for t in texts)
    ids = {box["id"] for box in boxes}
    for line in patch["patcher"]["lines"]:
        assert line["patchline"]["source"][0] in ids and line["patchline"]["destination"][0] in ids
    sonic_pi = (KITS / "seqvae_sonic_pi.rb").read_text()
    assert 'use_osc "localhost", 57130' in sonic_pi and "/seqvae/reply_to" in sonic_pi
    assert 'sync "/osc*/seqvae/notes"' in sonic_pi
