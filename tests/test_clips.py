"""Whole clips (engine/clips.py): cutting a long melody into windows and joining the decoded windows back,
every operation window by window, reading a whole line from a MIDI file, and the tie rule at the seams."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from server_support import OscClient, running_server

from seqvae.codec import NO_EVENT, NOTE_OFF, EventCodec, Melody, Meter, read_midi, write_midi
from seqvae.engine import AttributeVectors, Engine, clips
from seqvae.engine.inputs import MAX_CLIP_WINDOWS, clip_from_midi, clip_from_notes, melody_from_midi
from seqvae.models import build_model, get_config, vae_loss

CODEC = EventCodec()
C4, E4, G4 = (CODEC.pitch_to_class(p) for p in (60, 64, 67))


def _line(n_steps: int, seed: int) -> Melody:
    """A line with notes of 2-12 steps and rests: notes held across window boundaries are common."""
    rng = np.random.default_rng(seed)
    events, t = np.zeros(n_steps, np.int64), int(rng.integers(0, 3))
    while t < n_steps:
        events[t] = CODEC.pitch_to_class(int(rng.integers(55, 80)))
        t += int(rng.choice([2, 4, 6, 10, 12]))
        if t < n_steps and rng.random() < 0.2:
            events[t] = NOTE_OFF
            t += 2
    return Melody(CODEC.canonical(events))


def _window_wise(engine: Engine, clip: Melody) -> np.ndarray:
    """Each window of the clip reconstructed alone by the engine: rows [windows, steps]."""
    return np.stack([engine.reconstruct(w).events for w in clips.window_melodies(engine, clip)])


# ---- cutting and joining ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([NO_EVENT, NO_EVENT, NO_EVENT, NOTE_OFF, C4, E4, G4]), min_size=1, max_size=150),
       st.sampled_from([8, 24, 32]))
def test_cutting_then_joining_with_the_clip_own_ties_gives_it_back(events, steps):
    clip = Melody(CODEC.canonical(np.array(events)))
    rows = clips.split_windows(clip, steps)
    assert rows.shape == (clips.window_count(clip.n_steps, steps), steps)
    assert np.array_equal(clips.join_windows(rows, clips.layout(clip, steps), CODEC), clip.events)
    for row in rows:  # every window is a melody on its own: what it plays is what the clip plays there
        assert np.array_equal(CODEC.canonical(row), row)


def test_a_held_note_is_struck_again_in_the_next_window_and_tied_on_the_way_back():
    events = np.zeros(64, np.int64)
    events[28] = C4  # C4 from step 28 to 40: held over the boundary at 32
    events[40] = NOTE_OFF
    events[60] = E4  # E4 to the end: a note sounding at the end of the clip
    clip = Melody(events)
    rows = clips.split_windows(clip, 32)
    assert rows[1, 0] == C4 and rows[1, 8] == NOTE_OFF
    layout = clips.layout(clip, 32)
    assert layout.held == (C4,)
    joined = clips.join_windows(rows, layout, CODEC)
    assert joined[32] == NO_EVENT and [(n.pitch, n.start, n.end) for n in Melody(joined).notes()] == [
        (60, 28, 40), (64, 60, 64)]
    untied = clips.join_windows(rows, clips.ClipLayout(64, (None,)), CODEC)  # a source without that tie
    assert untied[32] == C4 and [(n.start, n.end) for n in Melody(untied).notes()][:2] == [(28, 32), (32, 40)]


def test_the_tie_rule_at_a_seam():
    assert clips.joined_token(C4, C4, C4) == NO_EVENT  # the source held C4 over: tie
    assert clips.joined_token(C4, C4, None) == C4  # a generated repeat stays a new attack
    assert clips.joined_token(C4, C4, E4) == C4  # the source held another note
    assert clips.joined_token(C4, E4, C4) == E4
    assert clips.joined_token(C4, NO_EVENT, C4) == NOTE_OFF  # a window's opening rest is silence
    assert clips.joined_token(None, NO_EVENT, None) == NO_EVENT
    assert clips.joined_token(None, E4, None) == E4


def test_a_clip_not_a_whole_number_of_windows_is_padded_with_rest():
    events = np.zeros(40, np.int64)
    events[36] = C4  # sounding at the clip's end (step 40)
    rows = clips.split_windows(Melody(events), 32)
    assert rows.shape == (2, 32) and rows[1, 4] == C4 and rows[1, 8] == NOTE_OFF and not rows[1, 9:].any()
    assert clips.layout(Melody(events), 32).n_steps == 40


def test_infill_windows_each_keep_a_bar_and_cover_the_gap_once():
    for window_bars in (2, 4):
        for n_bars in range(2, 12):
            for first in range(1, n_bars + 1):
                for last in range(first, n_bars + 1):
                    if first == 1 and last == n_bars:
                        continue
                    plan = clips.infill_windows(first, last, window_bars)
                    covered = sorted(b for _, low, high in plan for b in range(low, high + 1))
                    assert covered == list(range(first, last + 1)), (first, last, plan)
                    done: set[int] = set()
                    for start, low, high in plan:
                        window = set(range(start, start + window_bars))
                        assert set(range(low, high + 1)) <= window and start >= 1
                        known = {b for b in window if not first <= b <= last} | (window & done)
                        assert known - set(range(low, high + 1)), (first, last, plan)
                        done |= set(range(low, high + 1))


# ---- operations on a tiny untrained model (exact structural claims) -----------------------------------


def test_reconstruct_is_the_window_wise_decode_joined(tiny_engine):
    clip = _line(144, seed=3)  # 9 bars of 4/4: 5 windows, the last half rest
    result = clips.reconstruct(tiny_engine, clip)
    assert result.n_steps == 144 and result.meter == clip.meter
    rows = _window_wise(tiny_engine, clip)
    assert np.array_equal(result.events, clips.join_windows(rows, clips.layout(clip, 32), CODEC))
    inner = np.ones(144, bool)
    inner[::32] = False  # away from the seams every step is the window's own decode
    assert np.array_equal(result.events[inner], rows.reshape(-1)[:144][inner])


def test_one_window_clips_are_the_engine_own_operations(tiny_engine):
    melody = _line(32, seed=4)
    other = _line(32, seed=5)
    assert np.array_equal(clips.reconstruct(tiny_engine, melody).events, tiny_engine.reconstruct(melody).events)
    assert np.array_equal(clips.morph(tiny_engine, melody, other, 0.4).events,
                          tiny_engine.morph(melody, other, 0.4).events)
    ours = clips.similar(tiny_engine, melody, 3, 0.5, seed=2, temperature=0.5)
    theirs = tiny_engine.similar(melody, 3, 0.5, seed=2, temperature=0.5)
    assert [m.events.tolist() for m in ours] == [m.events.tolist() for m in theirs]


def test_morph_ends_are_each_clip_reconstruction(tiny_engine):
    a, b = _line(128, seed=6), _line(128, seed=7)
    for t, clip in ((0.0, a), (1.0, b)):
        assert np.array_equal(clips.morph(tiny_engine, a, b, t).events, clips.reconstruct(tiny_engine, clip).events)
    path = clips.interpolate(tiny_engine, a, b, 4)
    assert len(path) == 4 and all(m.n_steps == 128 for m in path)
    assert np.array_equal(path[0].events, clips.reconstruct(tiny_engine, a).events)
    assert np.array_equal(path[-1].events, clips.reconstruct(tiny_engine, b).events)
    assert np.array_equal(path[1].events, clips.morph(tiny_engine, a, b, 1 / 3).events)


def test_a_shorter_clip_loops_in_a_morph(tiny_engine):
    short, long = _line(64, seed=8), _line(144, seed=9)
    assert clips.morph(tiny_engine, short, long, 0.0).n_steps == 144
    assert np.array_equal(clips.morph(tiny_engine, short, long, 1.0).events,
                          clips.reconstruct(tiny_engine, long).events)
    looped = Melody(np.tile(short.events, 3))  # 2 windows repeated: the same latents, window by window
    assert np.array_equal(clips.morph(tiny_engine, short, long, 0.0).events,
                          clips.reconstruct(tiny_engine, looped).events[:144])
    za = clips.encode(tiny_engine, short)
    assert np.allclose(clips.blend(za, clips.encode(tiny_engine, long), 0.0), za[[0, 1, 0, 1, 0]])


def test_similar_and_shift_work_window_by_window(tiny_engine):
    clip = _line(128, seed=10)
    same = clips.similar(tiny_engine, clip, 2, amount=0.0, seed=1)
    assert all(np.array_equal(m.events, clips.reconstruct(tiny_engine, clip).events) for m in same)
    far = clips.similar(tiny_engine, clip, 2, amount=1.0, seed=1)
    assert len(far) == 2 and all(m.n_steps == 128 for m in far)
    assert not np.array_equal(far[0].events, far[1].events)
    engine = Engine(build_model(get_config("tiny_lstm")), device="cpu")
    with pytest.raises(ValueError, match="no attribute vectors"):
        clips.shift(engine, clip, "density")
    vector = np.zeros((1, engine.z_size), np.float32)
    vector[0, 0] = 1.0
    engine.set_attribute_vectors(AttributeVectors(["density"], vector))
    z = clips.encode(engine, clip)
    shifted = clips.shift(engine, clip, "density", 2.0)
    assert np.array_equal(shifted.events, clips.decode(engine, z + 2.0 * vector[0], clip).events)


def test_infill_keeps_every_other_bar_exactly(tiny_engine):
    clip = _line(128, seed=11)
    for first, last in ((3, 4), (2, 5), (1, 3), (7, 8), (4, 4)):
        result = clips.infill(tiny_engine, clip, first, last, seed=0)
        keep = np.ones(128, bool)
        keep[(first - 1) * 16:last * 16] = False
        assert result.n_steps == 128 and np.array_equal(result.events[keep], clip.events[keep]), (first, last)
    one = _line(32, seed=12)
    assert np.array_equal(clips.infill(tiny_engine, one, 2, 2, seed=5).events,
                          tiny_engine.infill(one, 2, 2, seed=5).events)


@pytest.mark.parametrize("call, message", [
    (lambda e: clips.infill(e, _line(128, 1), 1, 8), "bars 1-8 are the whole clip"),
    (lambda e: clips.infill(e, _line(128, 1), 5, 3), "run backwards"),
    (lambda e: clips.infill(e, _line(128, 1), 2, 9), "last bar 9 does not exist: this clip has bars 1..8"),
    (lambda e: clips.reconstruct(e, Melody(np.zeros(48, np.int64), meter=Meter(3, 4))), "3/4, whose bars do not fill"),
    (lambda e: clips.reconstruct(e, Melody(np.zeros(64, np.int64), codec=EventCodec(40, 90))), "pitch range 40..90"),
    (lambda e: clips.reconstruct(e, np.zeros(64)), "not a Melody"),
    (lambda e: clips.morph(e, _line(64, 1), _line(64, 2), 1.5), "t=1.5 is outside"),
    (lambda e: clips.similar(e, _line(64, 1), 0), "n=0"),
])
def test_bad_requests_get_clear_errors(tiny_engine, call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_engine)


# ---- reading whole lines ----------------------------------------------------------------------------


def _midi(path: Path, notes: list[tuple[int, float, float]], meters: list[tuple[int, int, float]]) -> Path:
    """notes: (pitch, start beat, duration in beats) at 120 bpm; meters: (numerator, denominator, at beat)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    pm.time_signature_changes += [pretty_midi.TimeSignature(n, d, beat * 0.5) for n, d, beat in meters]
    lead = pretty_midi.Instrument(program=0, name="Lead")
    lead.notes += [pretty_midi.Note(90, p, s * 0.5, (s + d) * 0.5) for p, s, d in notes]
    pm.instruments.append(lead)
    pm.write(str(path))
    return path


def test_clip_from_midi_reads_the_whole_line_in_bars(tmp_path):
    nine = [(60 + i % 5, i * 3.0, 3.0) for i in range(12)]  # 36 beats: 9 bars of 4/4, notes over bar lines
    path = _midi(tmp_path / "nine.mid", nine, [(4, 4, 0)])
    clip = clip_from_midi(path, 32, CODEC)
    assert clip.n_steps == 144 and clip.meter == Meter(4, 4)
    assert [(n.pitch, n.start, n.end) for n in clip.notes()] == [(p, int(s * 4), int((s + d) * 4)) for p, s, d in nine]
    with pytest.raises(ValueError, match="choose where to start with bar"):
        melody_from_midi(path, 32, CODEC)  # the one-window reading still asks
    late = _midi(tmp_path / "late.mid", [(62, 9.0, 2.0), (64, 13.0, 8.0), (65, 25.0, 1.0)], [(4, 4, 0)])
    clip = clip_from_midi(late, 32, CODEC)  # bars 3-7: from the first note's bar to the last onset's
    assert clip.n_steps == 80 and [(n.start, n.end) for n in clip.notes()] == [(4, 12), (20, 52), (68, 72)]
    ringing = _midi(tmp_path / "ringing.mid", [(62, 1.0, 2.0), (64, 6.0, 8.0)], [(4, 4, 0)])
    clip = clip_from_midi(ringing, 32, CODEC)  # a last note ringing past the window is cut, as --bar reads it
    assert np.array_equal(clip.events, melody_from_midi(ringing, 32, CODEC).events) and clip.n_steps == 32
    short = _midi(tmp_path / "short.mid", [(60, 0.0, 1.0), (62, 2.0, 1.0)], [(4, 4, 0)])
    assert np.array_equal(clip_from_midi(short, 32, CODEC).events, melody_from_midi(short, 32, CODEC).events)


def test_clip_from_midi_errors(tmp_path):
    change = _midi(tmp_path / "change.mid", [(60, i, 1.0) for i in range(20)], [(4, 4, 0), (2, 4, 8)])
    with pytest.raises(ValueError, match=r"changes meter at bar 3 \(4/4 -> 2/4\).*--bar N"):
        clip_from_midi(change, 32, CODEC)
    waltz = _midi(tmp_path / "waltz.mid", [(60, i, 1.0) for i in range(12)], [(3, 4, 0)])
    with pytest.raises(ValueError, match="bar 1 is in 3/4, whose bars do not fill this model's 32-step window"):
        clip_from_midi(waltz, 32, CODEC)
    assert clip_from_midi(waltz, 24, CODEC).n_steps == 48  # a triple model reads it
    empty = _midi(tmp_path / "empty.mid", [], [(4, 4, 0)])
    with pytest.raises(ValueError, match="no notes"):
        clip_from_midi(empty, 32, CODEC)
    too_long = _midi(tmp_path / "long.mid", [(60, i * 4.0, 4.0) for i in range(4 * 2 * MAX_CLIP_WINDOWS + 4)],
                     [(4, 4, 0)])
    with pytest.raises(ValueError, match=f"at most {2 * MAX_CLIP_WINDOWS} bars"):
        clip_from_midi(too_long, 32, CODEC)


def test_clip_from_notes_takes_notes_past_the_window():
    clip = clip_from_notes([(60, 0, 1, 80), (64, 7.5, 2, 90), (67, 17, 1, 100)], 32, CODEC, Meter(4, 4))
    assert clip.n_steps == 80 and [(n.pitch, n.start, n.end) for n in clip.notes()] == [
        (60, 0, 4), (64, 30, 38), (67, 68, 72)]
    assert clip_from_notes([(60, 0, 1, 80), (62, 7, 6, 80)], 32, CODEC, Meter(4, 4)).n_steps == 32  # rings past
    with pytest.raises(ValueError, match="outside the longest clip"):
        clip_from_notes([(60, 8 * MAX_CLIP_WINDOWS, 1, 80)], 32, CODEC, Meter(4, 4))


# ---- a model that has learned something: ties and accuracy survive the round trip ----------------


def _held_lines(n: int, seed: int, steps: int = 128) -> np.ndarray:
    """One pitch per line in notes of 6 or 10 steps: notes held over the window boundaries at every 32."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, steps), np.int64)
    for i in range(n):
        pitch, length, t = int(rng.integers(55, 63)), int(rng.choice([6, 10])), int(rng.choice([0, 2, 4]))
        while t < steps:
            out[i, t] = CODEC.pitch_to_class(pitch)
            t += length
    return out


@pytest.fixture(scope="module")
def trained() -> Engine:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        config = get_config("tiny_lstm")
        model = build_model(config)
        windows = np.concatenate([clips.split_windows(Melody(line), 32) for line in _held_lines(512, seed=1)])
        data = torch.from_numpy(windows)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
        generator = torch.Generator().manual_seed(0)
        for _ in range(300):
            x = data[torch.randint(0, len(data), (64,), generator=generator)]
            terms = vae_loss(model(x, eps=torch.randn(64, config.z_size, generator=generator)), x, beta=0.01,
                             free_bits=0.0)
            optimiser.zero_grad()
            terms.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
        assert float(terms.accuracy) > 0.8, "the fixture model did not learn; the tests below would mean nothing"
        yield Engine(model.eval(), device="cpu")
    finally:
        torch.set_num_threads(threads)


def _sounding_at_end(row: np.ndarray) -> int | None:
    """The event class of the note still sounding at the end of a window, or None."""
    notes = CODEC.events_to_notes(row)
    return CODEC.pitch_to_class(notes[-1].pitch) if notes and notes[-1].end == len(row) else None


@pytest.mark.slow
def test_eight_bar_round_trip_keeps_ties_and_the_window_accuracy(trained):
    kept_ties, clip_right, window_right = 0, 0, 0
    for line in _held_lines(24, seed=99):
        clip = Melody(line)
        result = clips.reconstruct(trained, clip)
        rows = _window_wise(trained, clip)
        split = clips.split_windows(clip, 32)
        right = rows == split
        for k, held in enumerate(clips.layout(clip, 32).held, start=1):
            # a seam step is right when the window before also ends sounding what the clip sounds there
            right[k, 0] &= _sounding_at_end(rows[k - 1]) == _sounding_at_end(split[k - 1])
            if held is not None and right[k, 0]:
                assert result.events[32 * k] == NO_EVENT  # the held note, played on both sides, stays tied
                kept_ties += 1
        right = right.reshape(-1)
        assert np.array_equal(result.events[right], clip.events[right])  # where the windows are right, so is the clip
        clip_right += int(np.sum(result.events == clip.events))
        window_right += int(np.sum(right))
    assert kept_ties >= 5, "too few reproduced ties to test the rule"
    assert clip_right >= window_right


# ---- the CLI: an 8-bar file without --bar is handled whole ---------------------------------------------


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory) -> dict[str, Path]:
    from seqvae.models import save_model

    root = tmp_path_factory.mktemp("clips_cli")
    torch.manual_seed(0)
    files = {"ck": save_model(build_model(get_config("tiny_lstm")), root / "ck"), "root": root}
    for name, seed, steps in (("a", 20, 128), ("b", 21, 128), ("nine", 22, 144)):
        files[name] = write_midi(replace(_line(steps, seed), bpm=100.0, program=33), root / f"{name}.mid")
    return files


def _cli(*argv) -> int:
    from seqvae.cli.main import main

    threads = torch.get_num_threads()
    try:
        return main([str(a) for a in argv] + ["--threads", "1"])
    finally:
        torch.set_num_threads(threads)


def _read_line(path: Path) -> Melody:
    return clip_from_midi(path, 32, CODEC)


def _notes_in(path: Path) -> list[tuple[int, int, int]]:
    """(pitch, start, end) in steps of the file's one line."""
    (line,) = read_midi(path).lines
    return [(n.pitch, n.start, n.end) for n in line.notes]


def test_cli_reconstructs_an_eight_bar_file_whole(cli_files, capsys):
    out = cli_files["root"] / "reconstruct"
    assert _cli("reconstruct", cli_files["a"], "--model", cli_files["ck"], "--out", out) == 0
    assert "over 4 windows" in capsys.readouterr().out
    engine = Engine.load(cli_files["ck"], device="cpu")
    expected = clips.reconstruct(engine, _read_line(cli_files["a"]))
    assert _notes_in(out / "reconstruct.mid") == [(n.pitch, n.start, n.end) for n in expected.notes()]
    assert _cli("reconstruct", cli_files["a"], "--model", cli_files["ck"], "--out", out) == 0
    assert (out / "reconstruct-2.mid").is_file()  # a second take never overwrites the first
    assert _cli("reconstruct", cli_files["nine"], "--model", cli_files["ck"], "--out", out, "--name", "nine") == 0
    assert _read_line(out / "nine.mid").n_steps == 144  # 9 bars in, 9 bars out
    assert _cli("reconstruct", cli_files["a"], "--bar", 3, "--model", cli_files["ck"], "--out", out,
                "--name", "window") == 0
    assert _read_line(out / "window.mid").n_steps == 32  # --bar keeps its one-window meaning


@pytest.mark.parametrize("argv, name, files", [
    (["morph", "{a}", "{b}", "--t", 0.5], "morph", 1),
    (["morph", "{a}", "{b}", "{b}", "{a}", "--x", 0.2, "--y", 0.7, "--name", "xy"], "xy", 1),
    (["interpolate", "{a}", "{b}", "--steps", 3], "interpolate", 4),
    (["similar", "{a}", "--n", 2, "--amount", 0.5, "--seed", 1], "similar", 3),
    (["infill", "{a}", "--bars", "3-4", "--seed", 1], "infill", 1),
])
def test_cli_operations_take_clips_whole(cli_files, argv, name, files):
    out = cli_files["root"] / name
    args = [a.format(**{k: str(v) for k, v in cli_files.items()}) if isinstance(a, str) else a for a in argv]
    assert _cli(*args, "--model", cli_files["ck"], "--out", out) == 0
    written = sorted(out.glob("*.mid"))
    assert len(written) == files
    for path in written:
        whole = path.name == f"{name}.mid" and files > 1
        assert read_midi(path).n_steps <= (128 * (files - 1) if whole else 128)
        assert max(n[2] for n in _notes_in(path)) > (128 * (files - 2) if whole else 96)  # the last bars play
    if name == "infill":
        kept = [n for n in _notes_in(cli_files["a"]) if n[2] <= 32 or n[1] >= 64]  # bars 1-2 and 5-8
        assert set(kept) <= set(_notes_in(out / "infill.mid"))


# ---- the OSC server: clip slots ---------------------------------------------------------------------------


def _paged(client, count: int = 1, pages_seen: list[int] | None = None) -> list[tuple[str, list[tuple]]]:
    """`count` melody replies, each reassembled from its /seqvae/notes_page pages: [(slot, notes)]."""
    out = []
    while len(out) < count:
        address, args = client.replies(1)[0]
        if address == "/seqvae/notes":  # small enough for one message
            out.append((args[0], _notes_of(args)))
            continue
        assert address == "/seqvae/notes_page", (address, args)
        slot, page, pages, _, n, *flat = args
        assert page == 1
        if pages_seen is not None:
            pages_seen.append(pages)
        for number in range(2, pages + 1):
            more_address, more = client.replies(1)[0]
            assert more_address == "/seqvae/notes_page" and more[:3] == [slot, number, pages]
            flat += more[5:]
            n += more[4]
        assert len(flat) == 4 * n
        out.append((slot, [tuple(flat[i:i + 4]) for i in range(0, len(flat), 4)]))
    return out


def _beats(melody: Melody) -> list[tuple]:
    """The notes as a reply carries them (beats on the 16th grid are exact in OSC's float32)."""
    return [(p, float(s), float(d), v) for p, s, d, v in melody.notes_in_beats()]


def test_osc_clip_slots_work_window_by_window(tiny_engine, tmp_path):
    a, b = _line(128, seed=30), _line(128, seed=31)
    write_midi(a, tmp_path / "a.mid")
    write_midi(b, tmp_path / "b.mid")
    with running_server(tiny_engine, tmp_path, page_bytes=300) as server:
        client = OscClient(server.address[1], "udp")
        try:
            client.send("/seqvae/encode_file", "a", "a.mid")  # no bar: the whole line, 8 bars, as a clip
            pages: list[int] = []
            ((slot, notes),) = _paged(client, pages_seen=pages)
            assert pages[0] > 1  # past page_bytes: in pages
            clip_a = clip_from_midi(tmp_path / "a.mid", 32, CODEC)
            assert slot == "a" and clip_a.n_steps == 128 and notes == _beats(clip_a)
            client.send("/seqvae/encode_file", "b", "b.mid", 0, 0)
            _paged(client)
            client.send("/seqvae/encode_file", "w", "a.mid", 0, 3)  # a bar: one window there, as before
            address, args = client.replies(1)[0]
            assert address == "/seqvae/notes" and max(s + d for _, s, d, _ in _notes_of(args)) <= 8.0
            client.send("/seqvae/morph", "a", "b", 0.0, "m")
            assert _paged(client) == [("m", _beats(clips.reconstruct(tiny_engine, clip_a)))]
            client.send("/seqvae/morph", "a", "b", 0.6, "m")
            clip_b = clip_from_midi(tmp_path / "b.mid", 32, CODEC)
            assert _paged(client) == [("m", _beats(clips.morph(tiny_engine, clip_a, clip_b, 0.6)))]
            client.send("/seqvae/morph", "w", "b", 0.0, "m1")  # a window and a clip: the window loops
            ((_, looped),) = _paged(client)
            assert max(s + d for _, s, d, _ in looped) > 24.0
            client.send("/seqvae/interpolate", "a", "b", 3, "walk")
            assert [name for name, _ in _paged(client, 3)] == ["walk_0", "walk_1", "walk_2"]
            client.send("/seqvae/similar", "a", 0.5, "v", 7)
            ((_, varied),) = _paged(client)
            assert max(s + d for _, s, d, _ in varied) > 24.0  # still 8 bars
            client.send("/seqvae/infill", "a", 3, 4, "f", 1)
            ((_, infilled),) = _paged(client)
            assert [n[:2] for n in infilled if n[1] < 8.0] == [n[:2] for n in _beats(clip_a) if n[1] < 8.0]  # bars 1-2
            novelty = client.one("/seqvae/novelty", "a")
            assert novelty[0] == "/seqvae/novelty" and math.isfinite(novelty[1][1])
            exported = client.one("/seqvae/export", "m", "clip.mid")
            assert exported[0] == "/seqvae/exported"
            assert _notes_in(Path(exported[1][1])) == [(n.pitch, n.start, n.end) for n in
                                                       clips.morph(tiny_engine, clip_a, clip_b, 0.6).notes()]
            long_notes = [60, 0.0, 1.0, 90, 64, 30.0, 2.0, 90]  # a note in bar 8: a clip of 8 bars
            client.send("/seqvae/encode", "e", 2, *long_notes)
            assert [n[:2] for n in _paged(client)[0][1]] == [(60, 0.0), (64, 30.0)]
            exported = client.one("/seqvae/export", "e", "notes.mid")
            assert _notes_in(Path(exported[1][1])) == [(60, 0, 4), (64, 120, 128)]
            error = client.one("/seqvae/infill", "a", 1, 8)
            assert error[0] == "/seqvae/error" and "whole clip" in error[1][1]
        finally:
            client.close()


def _notes_of(args: list) -> list[tuple]:
    _, _, count, *flat = args
    return [tuple(flat[i:i + 4]) for i in range(0, 4 * count, 4)]


def test_morph_xy_corners_are_each_clip_reconstruction(tiny_engine):
    corners = [_line(128, seed=40 + i) for i in range(3)] + [_line(64, seed=43)]  # d loops
    for (x, y), clip in zip(((0, 0), (1, 0), (0, 1)), corners, strict=False):
        assert np.array_equal(clips.morph_xy(tiny_engine, *corners, x, y).events,
                              clips.reconstruct(tiny_engine, clip).events)
    assert clips.morph_xy(tiny_engine, *corners, 1.0, 1.0).n_steps == 128
    one = [_line(32, seed=50 + i) for i in range(4)]
    assert np.array_equal(clips.morph_xy(tiny_engine, *one, 0.3, 0.8).events,
                          tiny_engine.morph_xy(*one, 0.3, 0.8).events)
