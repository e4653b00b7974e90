"""`seqvae serve`: the OSC server (protocol in server/PROTOCOL.md)."""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path
from typing import Any

from seqvae.models.precision import PRECISIONS

# option -> (built-in default, type); a --config JSON file may set any of them, flags override it.
OPTIONS: dict[str, tuple[Any, type]] = {
    "model": ("default", str), "host": ("127.0.0.1", str), "port": (57130, int), "reply_port": (None, int),
    "export_dir": ("seqvae-exports", str), "midi_out": (None, str), "allow_remote": (False, bool),
    "allow": ([], list), "device": (None, str), "threads": (2, int), "tempo": (120.0, float), "queue": (64, int),
    "batching": (True, bool), "verbose": (False, bool), "precision": ("auto", str),
    "clock": ("internal", str), "latency": (0.0, float), "clock_delay": (0.0, float), "midi_in": (None, str),
    "map_cc": ([], list), "map_osc": ([], list),
    "max_connections": (64, int), "idle_timeout": (60.0, float), "frame_timeout": (10.0, float),
}

_KIND_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false", list: "a list"}
SWITCH_INTERVAL_S = 0.0005  # see _serve: the GIL hand-over time a woken real-time thread may wait


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="answer OSC requests for melodies (Pd, SuperCollider, Max, Sonic Pi, liblo ...)",
        description="Serve a model over OSC on UDP and TCP (OSC 1.0 size-prefixed or 1.1 SLIP) on one port. "
        "Listens on loopback only unless --allow-remote and --allow say otherwise. Protocol: server/PROTOCOL.md.",
    )
    serve.add_argument("--config", type=Path, metavar="FILE",
                       help="JSON file of these options (see server/serve.example.json); flags override it")
    serve.add_argument("--model", help="shipped model name or checkpoint directory (default: default)")
    serve.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="UDP and TCP port (default: 57130)")
    serve.add_argument("--reply-port", type=int, metavar="P",
                       help="send every reply to the sender's host on port P (for one-shot senders like oscsend)")
    serve.add_argument("--export-dir", metavar="DIR",
                       help="where /seqvae/export writes MIDI files (default: ./seqvae-exports)")
    serve.add_argument("--midi-out", metavar="NAME",
                       help="play /seqvae/play on this MIDI output (an existing port, else a new virtual one)")
    serve.add_argument("--midi-in", metavar="NAME",
                       help="take notes (/seqvae/record) and controllers (/seqvae/map_cc) from this MIDI input (an "
                       "existing port, else a new virtual one). Never route --midi-out back into it")
    serve.add_argument("--allow-remote", action="store_true", default=None,
                       help="allow a non-loopback --host (needs --allow)")
    serve.add_argument("--allow", action="append", metavar="ADDR[,ADDR]",
                       help="client addresses or networks (CIDR) allowed with --allow-remote; repeatable")
    serve.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    serve.add_argument("--threads", type=int, help="CPU threads for inference (default: 2)")
    serve.add_argument("--precision", choices=PRECISIONS,
                       help="decoding arithmetic (default: auto, bfloat16 for bfloat16-stored models on CPUs with "
                       "AVX512-BF16, else float32)")
    serve.add_argument("--tempo", type=float, help="initial playback tempo in bpm (default: 120)")
    serve.add_argument("--clock", metavar="SOURCE",
                       help="what playback follows: internal (default, --tempo), link (Ableton Link; needs "
                       'pip install "seqvae[link]"), or midi[:PORT] (MIDI clock in on PORT, default seqvae-clock: '
                       "an existing port of that name, else a new virtual one)")
    serve.add_argument("--latency", type=float, metavar="MS",
                       help="send OSC note events MS ahead of their onset as timetagged bundles (0..2000; "
                       "default 0: plain messages at the onset). MIDI out stays at the onset")
    serve.add_argument("--clock-delay", type=float, metavar="MS",
                       help="with --clock midi: how late the ticks get here (-50..50 ms, default 0), like a DAW's "
                       "MIDI clock sync delay; JACK hands MIDI over half a period late on average")
    serve.add_argument("--queue", type=int, help="a client's requests waiting for the model before 'busy' "
                       "(default: 64; all clients together 16 times that)")
    serve.add_argument("--max-connections", type=int, metavar="N",
                       help="open TCP connections one host may hold; more are closed at once (default: 64)")
    serve.add_argument("--idle-timeout", type=float, metavar="S",
                       help="close a TCP connection that holds no slots or work after S silent seconds (default: 60)")
    serve.add_argument("--frame-timeout", type=float, metavar="S",
                       help="close a TCP connection whose packet is still half-sent S seconds after it began "
                       "(default: 10)")
    serve.add_argument("--no-batching", dest="batching", action="store_false", default=None,
                       help="decode each request alone (to compare with micro-batching)")
    serve.add_argument("-v", "--verbose", action="store_true", default=None, help="log every problem the server sees")
    serve.set_defaults(handler=_serve)


def resolve_options(args: argparse.Namespace) -> dict[str, Any]:
    """Flags, else the --config file, else the built-in defaults; a clear error for a bad file."""
    from_file: dict[str, Any] = {}
    if args.config is not None:
        try:
            from_file = json.loads(Path(args.config).read_text())
        except FileNotFoundError:
            raise ValueError(f"--config {args.config}: no such file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"--config {args.config} is not valid JSON ({exc})") from None
        if not isinstance(from_file, dict):
            raise ValueError(f"--config {args.config} must hold one JSON object of options")
        unknown = sorted(set(from_file) - set(OPTIONS))
        if unknown:
            raise ValueError(f"--config {args.config}: unknown option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(OPTIONS)}")
    options = {}
    for name, (default, kind) in OPTIONS.items():
        value = getattr(args, name, None)  # map_cc and map_osc are --config only
        if value is None:
            value = from_file.get(name, default)
            fits = isinstance(value, kind) or (kind is float and isinstance(value, int))
            if value is not None and (not fits or (kind is not bool and isinstance(value, bool))):
                raise ValueError(f"--config {args.config}: {name} should be {_KIND_NAMES[kind]}, got {value!r}")
        options[name] = value
    return options


def _serve(args: argparse.Namespace) -> int:
    import faulthandler
    import logging
    import signal

    from seqvae.server.clock import parse_clock
    from seqvae.server.server import SeqvaeServer, ServerConfig, check_bind

    opts = resolve_options(args)
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 PID` prints every thread's stack: for a server that seems stuck
        try:
            faulthandler.register(signal.SIGUSR1, all_threads=True)
        except (ValueError, OSError, AttributeError):  # stderr is not a real file (e.g. captured)
            pass
    logging.basicConfig(level=logging.DEBUG if opts["verbose"] else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in ("port", "reply_port"):
        if opts[name] is not None and not 1 <= opts[name] <= 65535:
            raise ValueError(f"--{name.replace('_', '-')} {opts[name]} is not a port: send 1..65535")
    if opts["queue"] < 1:
        raise ValueError("--queue must be at least 1")
    if opts["max_connections"] < 1:
        raise ValueError("--max-connections must be at least 1 (connections one host may hold open)")
    for name in ("idle_timeout", "frame_timeout"):
        if not 0 < opts[name] <= 86400:
            raise ValueError(f"--{name.replace('_', '-')} {opts[name]:g} must be more than 0 and at most 86400 "
                             "seconds: send e.g. 60")
    if not 20 <= opts["tempo"] <= 400:
        raise ValueError(f"--tempo {opts['tempo']:g} is outside 20..400 bpm")
    if not 0 <= opts["latency"] <= 2000:
        raise ValueError(f"--latency {opts['latency']:g} is outside 0..2000 ms")
    if not -50 <= opts["clock_delay"] <= 50:
        raise ValueError(f"--clock-delay {opts['clock_delay']:g} is outside -50..50 ms")
    if opts["clock_delay"] and not str(opts["clock"]).startswith("midi"):
        raise ValueError("--clock-delay is for --clock midi[:PORT] (Link peers agree on the time themselves)")
    parse_clock(opts["clock"])  # an unknown source, or Link not installed: said before loading the model
    config = ServerConfig(
        host=opts["host"], port=opts["port"], reply_port=opts["reply_port"], export_dir=Path(opts["export_dir"]),
        allow_remote=opts["allow_remote"], allow=tuple(opts["allow"]), batching=opts["batching"],
        max_queue=opts["queue"], bpm=float(opts["tempo"]), clock=opts["clock"], latency_ms=float(opts["latency"]),
        clock_delay_ms=float(opts["clock_delay"]),
        midi_in=opts["midi_in"], map_cc=tuple(opts["map_cc"]), map_osc=tuple(opts["map_osc"]),
        max_connections=opts["max_connections"], idle_timeout_s=float(opts["idle_timeout"]),
        frame_timeout_s=float(opts["frame_timeout"]),
    )
    check_bind(config)  # refuse a remote bind before spending seconds on the model
    if opts["map_cc"] and not opts["midi_in"]:
        raise ValueError("map_cc in --config needs MIDI in: set midi_in (or --midi-in NAME)")
    midi_in_port = None
    if opts["midi_in"]:  # a port that can't be opened is said before the model loads
        from seqvae.server.midi_ports import open_rtmidi_input

        midi_in_port = open_rtmidi_input(opts["midi_in"])
    engine = _load_engine(opts["model"], opts["device"], opts["threads"], opts["precision"])
    midi_port = None
    if opts["midi_out"]:
        from seqvae.server.player import open_midi_output

        midi_port = open_midi_output(opts["midi_out"])
    engine.sample(1, seed=0)  # the first forward pass pays one-time costs; not the first client
    # A thread that wakes while another runs Python waits up to the switch interval for the GIL (5 ms by default):
    # the player's note onsets and the MIDI clock's ticks must not, with requests being handled alongside.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # A full garbage collection walks every object, the loaded model's included (~170,000: 70 ms with the GIL
    # held, a frozen knob); frozen, they are never walked again and collections stay short.
    gc.freeze()
    server = SeqvaeServer(engine, config, midi_port=midi_port, midi_in_port=midi_in_port)

    def ready(address: tuple[str, int]) -> None:
        host, port = address
        extras = []
        if config.reply_port:
            extras.append(f"replies to port {config.reply_port}")
        if midi_port is not None:
            extras.append(f"MIDI out '{opts['midi_out']}'")
        if config.midi_in:
            extras.append(f"MIDI in '{config.midi_in}'")
        if server.player.clock.source != "internal":
            extras.append(f"clock {server.player.clock.name}")
        if config.latency_ms:
            extras.append(f"note events {config.latency_ms:g} ms ahead")
        if config.clock_delay_ms:
            extras.append(f"MIDI clock taken as {config.clock_delay_ms:g} ms late")
        extra = f"; {'; '.join(extras)}" if extras else ""
        print(f"seqvae serve: model '{engine.model_name}' on {engine.device}, {engine.steps} steps; "
              f"OSC on udp+tcp {host}:{port}; exports in {config.export_dir.resolve()}{extra}. Ctrl-C stops.",
              flush=True)

    try:
        server.serve_forever(on_ready=ready)
    except OSError as exc:
        raise ValueError(f"cannot listen on {config.host}:{config.port} ({exc.strerror or exc}): "
                         "is another server running there? pick another --port") from None
    print("seqvae serve: stopped", file=sys.stderr)
    return 0


def _load_engine(model: str, device: str | None, threads: int, precision: str) -> Any:
    from seqvae.engine import Engine

    try:
        return Engine.load(model, device=device, threads=threads, precision=precision)
    except FileNotFoundError as exc:
        if model == "default":
            raise FileNotFoundError(
                "the default model is not installed (seqvae/checkpoints/default/ is missing): reinstall seqvae, or "
                f"train one with `seqvae train` and pass --model RUN_DIR/model ({exc})"
            ) from None
        raise
