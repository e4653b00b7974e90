"""Fixtures shared by several test modules (pytest finds them here; helpers they use are in server_support.py)."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import time

import pytest
from link_peer import namespace_problem, private_namespace
from server_support import make_tiny_checkpoint, make_tiny_chord_checkpoint


@pytest.fixture(scope="session")
def tiny_engine(tmp_path_factory):
    """A real Engine on a tiny untrained checkpoint, shared by the server tests."""
    import torch

    from seqvae.engine import Engine

    torch.set_num_threads(1)
    return Engine.load(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt")), device="cpu")


@pytest.fixture(scope="session")
def tiny_chord_engine(tmp_path_factory):
    """A real Engine on a tiny untrained chord checkpoint (tiny_chords), for the chord server tests."""
    import torch

    from seqvae.engine import Engine

    torch.set_num_threads(1)
    return Engine.load(make_tiny_chord_checkpoint(tmp_path_factory.mktemp("tiny_chord_ckpt")), device="cpu")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared machine extra threads only wait."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def jack_server():
    """A JACK server on the dummy backend (no sound card), the default server while the test runs."""
    pytest.importorskip("rtmidi", reason="live MIDI output needs python-rtmidi")
    if shutil.which("jackd") is None:
        pytest.skip("jackd is not installed")
    name = f"seqvae-test-{os.getpid()}"
    # 128-frame periods: JACK hands MIDI over once a period, so this is the timing grain (2.7 ms)
    proc = subprocess.Popen(["jackd", "-n", name, "-d", "dummy", "-r", "48000", "-p", "128"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    old = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    time.sleep(1.0)
    # A collection of the whole suite's objects holds the GIL for a long time: a Python callback in a JACK
    # process cycle then misses the cycle (its MIDI is lost), and clock ticks arrive late. `seqvae serve`
    # freezes its objects after loading for the same reason.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield name
    finally:
        gc.enable()
        gc.unfreeze()
        if old is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = old
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def namespace():
    """A private network namespace for Link (never the host's network); skips where Link or namespaces are missing."""
    pytest.importorskip("link", reason='Ableton Link for Python is not installed: pip install "seqvae[link]"')
    problem = namespace_problem()
    if problem:
        pytest.skip(f"Link runs only inside a private network namespace, and none can be made here: {problem}")
    with private_namespace() as name:
        yield name
