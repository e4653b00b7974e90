"""MIDI ports by name through mido and python-rtmidi: an existing port of that name, else a new virtual one.

Tries mido's configured backend (MIDO_BACKEND), then rtmidi's ALSA, JACK, CoreMIDI and Windows MM
APIs, and says what each attempt answered when none works.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

BACKENDS = ("mido.backends.rtmidi/LINUX_ALSA", "mido.backends.rtmidi/UNIX_JACK",
            "mido.backends.rtmidi/MACOSX_CORE", "mido.backends.rtmidi/WINDOWS_MM")


def open_midi_output(name: str) -> Any:
    """A mido output named `name` (live playback goes here)."""
    return _open_port(name, "output")


def open_midi_input(name: str, callback: Callable[[Any], None] | None = None) -> Any:
    """A mido input named `name`; `callback(message)` runs on the MIDI thread for each message received."""
    return _open_port(name, "input", callback)


RTMIDI_APIS = ("LINUX_ALSA", "UNIX_JACK", "MACOSX_CORE", "WINDOWS_MM")


def open_rtmidi_input(name: str, timing: bool = False) -> Any:
    """A python-rtmidi `MidiIn`: the port `name` when one exists, else a virtual one; sysex and active sensing
    ignored, and MIDI clock unless `timing`. The API comes from MIDO_BACKEND's suffix when set (.../UNIX_JACK).

    MIDI in (notes, CCs) and MIDI clock read it by polling `get_message()` rather than through mido's callback:
    that ran on JACK's process thread, waited there for the GIL, and JACK dropped the period's events.
    """
    try:
        import rtmidi
    except ImportError as exc:
        raise ValueError(f"could not open MIDI input {name!r}: {exc}. MIDI in needs python-rtmidi "
                         "(pip install python-rtmidi)") from None
    wanted = os.environ.get("MIDO_BACKEND", "").rpartition("/")[2]
    apis = [wanted] if wanted in RTMIDI_APIS else list(RTMIDI_APIS)
    failures = []
    for api_name in apis:
        api = getattr(rtmidi, f"API_{api_name}")
        if api not in rtmidi.get_compiled_api():
            continue
        try:
            port = rtmidi.MidiIn(api, name="seqvae")
            names = port.get_ports()
            match = [i for i, found in enumerate(names) if found == name or found.split(":")[-1] == name]
            if match:
                port.open_port(match[0], name)
            else:
                port.open_virtual_port(name)
            port.ignore_types(sysex=True, timing=not timing, active_sense=True)
            return port
        except Exception as exc:  # rtmidi's own error types, per API
            failures.append(f"{api_name}: {exc}")
    raise ValueError(
        f"could not open MIDI input {name!r} ({'; '.join(failures) or 'no MIDI API compiled in'}). MIDI in needs a "
        "MIDI system: ALSA, or a running JACK server (jackd -d dummy)"
    )


def _open_port(name: str, direction: str, callback: Callable[[Any], None] | None = None) -> Any:
    import mido

    attempts = [os.environ["MIDO_BACKEND"]] if os.environ.get("MIDO_BACKEND") else []
    attempts += BACKENDS
    failures = []
    for spec in attempts:
        try:
            backend = mido.Backend(spec, load=True)
            if direction == "output":
                names = backend.get_output_names()
                return backend.open_output(name, virtual=name not in names)
            names = backend.get_input_names()
            return backend.open_input(name, virtual=name not in names, callback=callback)
        except ImportError as exc:
            failures.append(f"{spec}: {exc}")
            if "rtmidi" in str(exc):
                break  # no python-rtmidi: every other attempt would say the same
        except Exception as exc:  # rtmidi raises its own error types per API
            if "not compiled in" not in str(exc):  # another platform's API: not worth reporting
                failures.append(f"{spec.rsplit('/', 1)[-1]}: {exc}")
    raise ValueError(
        f"could not open MIDI {direction} {name!r} ({'; '.join(failures)}). Live MIDI needs python-rtmidi "
        "(pip install python-rtmidi) and a MIDI system: ALSA, or a running JACK server (jackd -d dummy)"
    )
