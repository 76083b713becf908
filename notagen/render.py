"""One finished piece -> the files people open: MusicXML, MIDI, score pages (SVG) and audio.

Both `inference/inference.py` (`--render true`) and the demo page call `export_piece`, so a piece
looks and sounds the same wherever it was made.

Design choices
- The ABC text is converted to MusicXML once (abc2xml); the MIDI and the score pages are made from
  that MusicXML (music21, verovio), the audio from the MIDI (`notagen.audio`).
- Where each file goes is the caller's choice: `path_for(kind, suffix) -> Path`, kinds "musicxml",
  "midi", "svg" (suffix "_page<N>.svg"), "audio".
- A step that fails is recorded as a problem ("verovio failed: ...", "audio: ...") and the steps
  that do not depend on it still run; nothing raises for a bad piece.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .abc.convert import abc_to_musicxml, musicxml_to_midi, musicxml_to_svg_pages
from .audio import find_synth, midi_seconds, midi_to_audio
from .io import atomic_write_text

PathFor = Callable[[str, str], Path]


@dataclass
class RenderSettings:
    musicxml: bool = True  # also MIDI (made from the MusicXML)
    svg: bool = False  # score pages
    audio: bool = False  # audio from the MIDI
    audio_format: str = "mp3"  # wav, mp3, ogg or flac
    synth: str = "auto"  # see notagen.audio.find_synth
    soundfont: str = ""  # a .sf2 file instead of the synth's default


@dataclass
class Rendered:
    files: dict[str, str | list[str]] = field(default_factory=dict)  # kind -> path (svg: list of pages)
    problems: list[str] = field(default_factory=list)
    svg_pages: list[str] = field(default_factory=list)  # the SVG documents themselves
    audio_seconds: float | None = None
    midi_seconds: float | None = None


def error_reason(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def export_piece(abc_text: str, path_for: PathFor, settings: RenderSettings | None = None) -> Rendered:
    """Write the files of one piece (standard, interleaved or generated ABC) where `path_for` says."""
    settings = settings or RenderSettings()
    done = Rendered()
    if not (settings.musicxml or settings.svg or settings.audio):
        return done
    try:
        musicxml = abc_to_musicxml(abc_text)
    except Exception as error:  # noqa: BLE001 - any converter failure is a reason, not a crash
        done.problems.append(error_reason(error))
        return done
    if settings.musicxml or settings.audio:
        xml_path = path_for("musicxml", ".musicxml")
        atomic_write_text(xml_path, musicxml)
        done.files["musicxml"] = str(xml_path)
        try:
            midi_path = musicxml_to_midi(musicxml, path_for("midi", ".mid"))
            done.files["midi"] = str(midi_path)
        except Exception as error:  # noqa: BLE001
            done.problems.append(error_reason(error))
    if settings.svg:
        try:
            done.svg_pages = musicxml_to_svg_pages(musicxml)
            pages = []
            for number, page in enumerate(done.svg_pages, start=1):
                page_path = path_for("svg", f"_page{number}.svg")
                atomic_write_text(page_path, page)
                pages.append(str(page_path))
            done.files["svg"] = pages
        except Exception as error:  # noqa: BLE001
            done.problems.append(error_reason(error))
    if settings.audio and "midi" in done.files:
        try:
            synth = find_synth(settings.synth, settings.soundfont or None)
            audio = midi_to_audio(done.files["midi"], path_for("audio", f".{settings.audio_format}"), synth)
            done.files["audio"] = str(audio.path)
            done.audio_seconds = round(audio.seconds, 3)
            done.midi_seconds = round(midi_seconds(done.files["midi"]), 3)
        except Exception as error:  # noqa: BLE001
            done.problems.append(f"audio: {error_reason(error)}")
    return done
