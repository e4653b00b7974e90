"""`seqvae serve`: refuses what it must, with clear messages, and serves a real checkpoint until Ctrl-C."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from server_support import make_tiny_checkpoint

from seqvae.cli.main import main
from seqvae.server.osc import encode_message, parse_packet

REPO = Path(__file__).resolve().parent.parent


def test_missing_default_model_is_a_clear_error(monkeypatch, tmp_path, capsys):
    import seqvae.models.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "CHECKPOINTS_DIR", tmp_path / "none")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "the default model is not installed" in err and "--model RUN_DIR/model" in err


@pytest.mark.parametrize("argv, needle", [
    (["serve", "--host", "0.0.0.0"], "add --allow-remote and --allow"),
    (["serve", "--host", "0.0.0.0", "--allow-remote"], "--allow-remote needs --allow"),
    (["serve", "--port", "70000"], "--port 70000 is not a port"),
    (["serve", "--tempo", "1000"], "--tempo 1000 is outside 20..400"),
    (["serve", "--max-connections", "0"], "--max-connections must be at least 1"),
    (["serve", "--idle-timeout", "0"], "--idle-timeout 0 must be more than 0 and at most 86400 seconds"),
    (["serve", "--frame-timeout", "-1"], "--frame-timeout -1 must be more than 0"),
    (["serve", "--config", "/nonexistent/serve.json"], "no such file"),
])
def test_bad_options_are_refused_before_loading_a_model(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_config_file_is_checked(tmp_path, capsys):
    bad = tmp_path / "serve.json"
    bad.write_text(json.dumps({"prot": 1}))
    assert main(["serve", "--config", str(bad)]) == 2
    assert "unknown option(s) prot; known: model, host, port" in capsys.readouterr().err
    bad.write_text(json.dumps({"port": True}))
    assert main(["serve", "--config", str(bad)]) == 2
    assert "port should be a whole number, got True" in capsys.readouterr().err
    example = json.loads((REPO / "server" / "serve.example.json").read_text())
    from seqvae.cli.serve_command import OPTIONS

    assert set(example) <= set(OPTIONS)


def test_serve_answers_and_stops_on_ctrl_c(tmp_path):
    checkpoint = make_tiny_checkpoint(tmp_path / "ckpt")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"model": str(checkpoint), "threads": 1, "export_dir": str(tmp_path / "out")}))
    proc = subprocess.Popen([sys.executable, "-m", "seqvae.cli.main", "serve", "--config", str(config),
                             "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline()
        assert f"OSC on udp+tcp 127.0.0.1:{port}" in banner and "model 'ckpt'" in banner, proc.stderr.read()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(20)
            client.sendto(encode_message("/seqvae/ping", [3]), ("127.0.0.1", port))
            reply = parse_packet(client.recv(65536))[0]
        assert reply.address == "/seqvae/pong" and reply.args[:2] == (3, "ckpt")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        assert "seqvae serve: stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
