"""The README's Python example runs as written, so it cannot drift from the code.

Each ```python block is run by a fresh interpreter in an empty working directory, as a user who
has just installed seqvae would run it, and every MIDI file it names must exist afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)


def test_the_readme_has_an_engine_example():
    assert any("Engine" in block for block in BLOCKS)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i + 1}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"the README's example failed:\n{result.stderr}"
    for name in re.findall(r"[\"']([\w./-]+\.mid)[\"']", code):
        assert (tmp_path / name).is_file(), f"the README's example did not write {name}"
