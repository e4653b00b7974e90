"""The server's helper process for MIDI files: results and errors come back, and a dead process is replaced."""

from __future__ import annotations

import os

import pytest

from seqvae.codec import EventCodec, Melody, Meter, write_midi
from seqvae.server.file_jobs import FileJobs, read_line


def test_files_are_read_and_written_in_the_helper_process_and_errors_come_back(tmp_path):
    codec = EventCodec()
    events = codec.canonical([60, 0, 0, 0, 64, 0, 67, 0] * 4)
    melody = Melody(events, meter=Meter(4, 4), codec=codec)
    jobs = FileJobs()
    try:
        path = jobs.run(write_midi, melody, tmp_path / "take.mid", keep_existing=True)
        again = jobs.run(write_midi, melody, tmp_path / "take.mid", keep_existing=True)
        assert path.name == "take.mid" and again.name == "take-2.mid"  # the helper keeps the first take
        back = jobs.run(read_line, path, 32, codec, None, 1)
        assert list(back.events) == list(events)
        with pytest.raises(ValueError, match="bar 9"):
            jobs.run(read_line, path, 32, codec, None, 9)
        assert jobs.run(os.getpid) != os.getpid()
    finally:
        jobs.close()


def test_a_helper_process_that_dies_gives_a_clear_error_and_the_next_request_a_new_one(tmp_path):
    jobs = FileJobs()
    try:
        first = jobs.run(os.getpid)
        with pytest.raises(RuntimeError, match="send the request again"):
            jobs.run(os._exit, 3)
        second = jobs.run(os.getpid)
        assert second not in (first, os.getpid())
    finally:
        jobs.close()
