"""Melody codec: events on a 16th-note grid <-> notes <-> MIDI files. No torch here."""

from seqvae.codec.events import NO_EVENT, NOTE_OFF, EventCodec, Note
from seqvae.codec.melody import Melody
from seqvae.codec.meter import Meter, family_for_window
from seqvae.codec.midi import MidiReadError, MidiScore, read_midi, write_midi

__all__ = [
    "NO_EVENT", "NOTE_OFF", "EventCodec", "Note", "Melody", "Meter", "family_for_window",
    "MidiReadError", "MidiScore", "read_midi", "write_midi",
]
