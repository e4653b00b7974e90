"""OSC wire format: parsing, reply encoding, bundles, TCP framing detection, paging, argument checks."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from seqvae.codec import Melody, Note
from seqvae.server.osc import (
    FramingError,
    OscParseError,
    StreamDeframer,
    encode_bundle,
    encode_message,
    parse_packet,
    size_prefix_encode,
    slip_encode,
)
from seqvae.server.params import Param, RequestError, as_int, as_slot, bind
from seqvae.server.paths import export_path
from seqvae.server.protocol import notes_messages

osc_args = st.lists(
    st.one_of(
        st.integers(-(2**31), 2**31 - 1),
        st.floats(allow_nan=False, allow_infinity=False, width=32),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=20),
    ),
    max_size=30,
)


@given(osc_args)
@settings(max_examples=200, deadline=None)
def test_encode_message_is_read_back_by_python_osc(args):
    data = encode_message("/seqvae/notes", args)
    parsed = OscMessage(data)
    assert parsed.address == "/seqvae/notes"
    assert len(parsed.params) == len(args)
    for sent, got in zip(args, parsed.params, strict=True):
        if isinstance(sent, float):
            assert got == pytest.approx(sent, rel=1e-6, abs=1e-30)
        else:
            assert got == sent
    assert [m.args for m in parse_packet(data)] == [tuple(parsed.params)]


def test_encode_matches_python_osc_builder_bytes():
    builder = OscMessageBuilder("/seqvae/notes")
    args = ["lead", 120.0, 2, 60, 0.0, 0.5, 90]
    for arg in args:
        builder.add_arg(arg)
    assert encode_message("/seqvae/notes", args) == builder.build().dgram


def test_replies_refuse_types_pd_cannot_read():
    with pytest.raises(TypeError):
        encode_message("/x", [True])
    with pytest.raises(TypeError):
        encode_message("/x", [[1, 2]])
    with pytest.raises(OverflowError):
        encode_message("/x", [2**40])


def test_bundles_flatten_in_order_with_times():
    inner = OscBundleBuilder(0)  # immediately
    for i in range(3):
        m = OscMessageBuilder("/seqvae/ping")
        m.add_arg(i)
        inner.add_content(m.build())
    outer = encode_bundle([encode_message("/seqvae/status"), inner.build().dgram], run_at=2_000_000_000.5)
    messages = parse_packet(outer)
    assert [m.address for m in messages] == ["/seqvae/status"] + ["/seqvae/ping"] * 3
    assert [m.args for m in messages[1:]] == [(0,), (1,), (2,)]
    # the inner 'immediately' bundle runs no earlier than its enclosing bundle
    assert all(m.run_at == pytest.approx(2_000_000_000.5, abs=1e-6) for m in messages)
    assert parse_packet(encode_bundle([encode_message("/a")]))[0].run_at is None


@pytest.mark.parametrize("data, needle", [
    (b"", "not an OSC packet"),
    (b"hello world!", "not an OSC packet"),
    (b"/abc", "not terminated"),
    (b"/ab\x00xyz\x00", "type tag string must start"),
    (b"/a\x00\x00,c\x00\x00\x00\x00\x00A", "'c' is not supported"),
    (b"/a\x00\x00,ii\x00\x00\x00\x00\x01", "malformed"),
    (b"/a\x00\x00,s\x00\x00abcd", "malformed"),
    (b"/a\x00", "multiple of 4"),
    (b"#bundle\x00\x00\x00\x00\x00\x00\x00\x00\x01\xff\xff\xff\xf8/a\x00\x00", "element size -8"),
    (b"#bundle\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x01\x00/a\x00\x00", "element size 256"),
    (b"#bundle\x00\x00\x00", "8-byte timetag"),
])
def test_bad_packets_raise_clear_parse_errors(data, needle):
    with pytest.raises(OscParseError, match=needle):
        parse_packet(data)


def test_deeply_nested_bundles_are_refused_not_recursed():
    packet = encode_message("/seqvae/ping")
    for _ in range(50):
        packet = encode_bundle([packet])
    with pytest.raises(OscParseError, match="nested more than"):
        parse_packet(packet)


def _stream(packets, framing):
    return b"".join(slip_encode(p) if framing == "slip" else size_prefix_encode(p) for p in packets)


@given(st.lists(osc_args, min_size=1, max_size=6), st.sampled_from(["slip", "size"]), st.data())
@settings(max_examples=150, deadline=None)
def test_deframer_rebuilds_packets_from_any_chunking(arg_lists, framing, data):
    packets = [encode_message("/seqvae/ping", args) for args in arg_lists]
    stream = _stream(packets, framing)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    deframer = StreamDeframer()
    got = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        got += deframer.feed(stream[prev:cut])
        prev = cut
    assert deframer.mode == framing
    assert got == packets


def test_slip_without_leading_end_is_detected():
    packet = encode_message("/seqvae/ping", [1])
    deframer = StreamDeframer()
    assert deframer.feed(packet + b"\xc0") == [packet]
    assert deframer.mode == "slip"
    assert deframer.frame(b"\xc0x") == b"\xc0\xdb\xdcx\xc0"


def test_size_prefix_garbage_is_fatal_and_oversized_slip_is_skipped():
    deframer = StreamDeframer(max_packet=1024)
    (err,) = deframer.feed(struct.pack(">i", 10**9) + b"xxxx")
    assert isinstance(err, FramingError) and err.fatal and "size prefix" in str(err)
    slip = StreamDeframer(max_packet=64)
    out = slip.feed(b"\xc0" + b"/" * 500)
    assert isinstance(out[0], FramingError) and not out[0].fatal
    packet = encode_message("/seqvae/ping")
    assert slip.feed(b"/" * 10 + b"\xc0" + slip_encode(packet)) == [packet]  # resynchronised at the next END


def _melody(n_notes: int, steps: int = 256) -> Melody:
    notes = [Note(40 + i % 40, i, i + 1, 80) for i in range(n_notes)]
    return Melody.from_notes(notes, steps)


def test_short_melodies_are_one_notes_message():
    melody = _melody(10, 32)
    (msg,) = notes_messages("a", melody)
    address, args = msg
    assert address == "/seqvae/notes"
    assert args[:3] == ["a", 120.0, 10]
    assert len(args) == 3 + 4 * 10
    assert args[3:7] == [40, 0.0, 0.25, 80]


@pytest.mark.parametrize("page_bytes", [8192, 1000, 300])
def test_long_replies_are_paged_under_the_limit_and_reassemble(page_bytes):
    melody = _melody(200)
    messages = notes_messages("lead", melody, page_bytes)
    sizes = [len(encode_message(a, args)) for a, args in messages]
    if len(encode_message("/seqvae/notes", ["lead", 120.0, 200] + [0] * 800)) <= page_bytes:
        assert len(messages) == 1
        return
    assert all(size <= page_bytes for size in sizes)
    assert all(a == "/seqvae/notes_page" for a, _ in messages)
    pages = [args for _, args in messages]
    assert [p[1] for p in pages] == list(range(1, len(pages) + 1))
    assert all(p[2] == len(pages) for p in pages)
    flat = [v for p in pages for v in p[5:]]
    assert sum(p[4] for p in pages) == 200 == len(flat) // 4
    expected = [v for note in melody.notes_in_beats() for v in note]
    assert flat == expected


def test_numbers_are_accepted_in_either_type():
    assert as_int(3.0, "steps") == 3
    assert as_slot(2.0) == "2"
    with pytest.raises(RequestError, match="whole number"):
        as_int(2.5, "steps")
    with pytest.raises(RequestError, match="slot name"):
        as_slot(True)
    with pytest.raises(RequestError, match="spaces"):
        as_slot("a b")
    params = (Param("a", "slot"), Param("t", "float", low=0.0, high=1.0), Param("out", "slot", default="morph"))
    assert bind("/seqvae/morph", params, ("a", 1)) == ["a", 1.0, "morph"]
    with pytest.raises(RequestError, match="missing t: send /seqvae/morph a t \\[out\\]"):
        bind("/seqvae/morph", params, ("a",))
    with pytest.raises(RequestError, match="too many"):
        bind("/seqvae/morph", params, ("a", 0.5, "o", 1))
    for bad in (math.nan, math.inf, -0.1, "0.5", None, b"x", [1]):
        with pytest.raises(RequestError, match="t must be a number from 0 to 1"):
            bind("/seqvae/morph", params, ("a", bad))


@pytest.mark.parametrize("name", ["../x.mid", "/etc/passwd", "a/../../x", "C:\\x.mid", "a\\b.mid", "~/x.mid",
                                  "", "a//b.mid", "./x.mid", "x\x00.mid"])
def test_export_paths_stay_inside(tmp_path, name):
    with pytest.raises(RequestError):
        export_path(tmp_path, name)


def test_export_paths_resolve_and_refuse_links_out(tmp_path):
    assert export_path(tmp_path, "take1") == tmp_path.resolve() / "take1.mid"
    assert export_path(tmp_path, "set/take.midi") == tmp_path.resolve() / "set" / "take.midi"
    outside = tmp_path.parent / f"{tmp_path.name}_outside"
    outside.mkdir()
    (tmp_path / "link").symlink_to(outside)
    with pytest.raises(RequestError, match="outside the export directory"):
        export_path(tmp_path, "link/x.mid")


def test_protocol_md_documents_every_address_with_its_arguments():
    from pathlib import Path

    from seqvae.server.protocol import ROUTES

    text = (Path(__file__).resolve().parent.parent / "server" / "PROTOCOL.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in text.splitlines()
            if line.startswith("| `/seqvae/")}
    assert set(rows) == set(ROUTES)
    for address, route in ROUTES.items():
        for param in route.params:
            assert param.name in rows[address], (address, param.name)
