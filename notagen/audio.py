"""MIDI -> audio (WAV, MP3, OGG or FLAC) with a General MIDI soundfont, and nothing downloaded.

Design choices
- Two synthesizer routes, both offline:
  * "fluidsynth": the `fluidsynth` program with a system General MIDI soundfont (Debian's
    `fluidsynth` + `fluid-soundfont-gm`: FluidR3_GM, 148 MB, the better sound), where installed;
  * "midirenderer": the `midirenderer` wheel (a Rust synth, pip only) with the TimGM6mb soundfont
    that `pretty_midi` ships (6 MB), which every install of this project has.
  "auto" takes fluidsynth when both it and a system soundfont are present, else midirenderer.
- Every route's output goes through the same finish: stereo float samples, trailing silence cut
  to a short release tail, peak normalised to -1 dBFS (the synths' own gains differ a lot), then
  written by `soundfile` (libsndfile encodes MP3 itself: no ffmpeg), atomically.
- `AudioError` carries the reason; nothing here retries.
- The audio libraries (pretty_midi, midirenderer, soundfile) are imported when audio is made, not
  with this module: a run without `--render` never loads them, and a missing one is an `AudioError`.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .io import atomic_open

SYSTEM_SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2",
                     "/usr/share/sounds/sf2/default-GM.sf2", "/usr/share/soundfonts/default.sf2")
SYNTHS = ("auto", "fluidsynth", "midirenderer")
FORMATS = {"wav": "WAV", "mp3": "MP3", "ogg": "OGG", "flac": "FLAC"}
SAMPLE_RATE = 44100
RELEASE_SECONDS = 1.0  # kept after the last sound above the silence threshold
MAX_TAIL_SECONDS = 1.5  # reverb never runs longer than this past the last note's end (synth versions differ)
FADE_SECONDS = 0.05  # a cut tail fades out instead of clicking
SILENCE = 1e-3  # -60 dBFS
PEAK = 10 ** (-1 / 20)  # -1 dBFS


class AudioError(RuntimeError):
    """Audio that could not be made; the message says which synth failed and why."""


@dataclass(frozen=True)
class Synth:
    route: str  # "fluidsynth" or "midirenderer"
    soundfont: Path


@dataclass(frozen=True)
class Audio:
    path: Path
    seconds: float
    synth: Synth


def packaged_soundfont() -> Path | None:
    """pretty_midi's TimGM6mb.sf2 (General MIDI, installed with the requirements)."""
    try:
        import pretty_midi  # lazy: see the module docstring
    except ImportError:
        return None
    path = Path(pretty_midi.__file__).resolve().parent / "TimGM6mb.sf2"
    return path if path.is_file() else None


def system_soundfont() -> Path | None:
    return next((Path(p).resolve() for p in SYSTEM_SOUNDFONTS if Path(p).is_file()), None)


def find_synth(name: str = "auto", soundfont: str | Path | None = None) -> Synth:
    """The synth route to use: `name` in SYNTHS; `soundfont` overrides the route's default file."""
    name = (name or "auto").strip().lower()
    if name not in SYNTHS:
        raise AudioError(f"unknown synth {name!r}: use {', '.join(SYNTHS)}")
    chosen = Path(soundfont).expanduser() if soundfont else None
    if chosen is not None and not chosen.is_file():
        raise AudioError(f"soundfont not found: {chosen}")
    has_fluidsynth = shutil.which("fluidsynth") is not None
    if name == "fluidsynth" or (name == "auto" and has_fluidsynth and (chosen or system_soundfont())):
        if not has_fluidsynth:
            raise AudioError("synth 'fluidsynth' asked for, but the fluidsynth program is not installed "
                             "(apt-get install fluidsynth fluid-soundfont-gm), or use --synth midirenderer")
        font = chosen or system_soundfont()
        if font is None:
            raise AudioError("fluidsynth needs a General MIDI soundfont: apt-get install fluid-soundfont-gm, "
                             "or give one with --soundfont")
        return Synth("fluidsynth", font)
    font = chosen or packaged_soundfont()
    if font is None:
        raise AudioError("no soundfont: pretty_midi (which ships TimGM6mb.sf2) is not installed; "
                         "pip install -r requirements.txt, or give one with --soundfont")
    try:
        import midirenderer  # noqa: F401 - lazy: see the module docstring
    except ImportError:
        raise AudioError("the midirenderer package is not installed (pip install -r requirements.txt)") from None
    return Synth("midirenderer", font)


@lru_cache(maxsize=2)
def _soundfont_bytes(path: Path) -> bytes:
    return path.read_bytes()


def _render_fluidsynth(synth: Synth, midi_path: Path, sample_rate: int):
    import soundfile  # lazy: see the module docstring

    with tempfile.TemporaryDirectory(prefix="notagen-audio-") as tmp:
        wav = Path(tmp) / "out.wav"
        command = ["fluidsynth", "-ni", "-q", "-g", "0.8", "-r", str(sample_rate), "-T", "wav",
                   "-F", str(wav), str(synth.soundfont), str(midi_path)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise AudioError("fluidsynth timed out after 600 s") from None
        if done.returncode != 0 or not wav.is_file():
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
            raise AudioError(f"fluidsynth failed: {detail[0][:300]}")
        samples, rate = soundfile.read(str(wav), dtype="float32", always_2d=True)
    return samples, rate


def _render_midirenderer(synth: Synth, midi_path: Path, sample_rate: int):
    import midirenderer  # lazy: see the module docstring
    import soundfile

    try:
        wav_bytes = midirenderer.render_wave_from(_soundfont_bytes(synth.soundfont), midi_path.read_bytes())
    except (ValueError, RuntimeError) as error:
        raise AudioError(f"midirenderer failed: {error}") from None
    samples, rate = soundfile.read(io.BytesIO(wav_bytes), dtype="float32", always_2d=True)
    return samples, rate


def finish(samples, rate: int, last_note_seconds: float | None = None):
    """Cut trailing silence to a RELEASE_SECONDS tail, never more than MAX_TAIL_SECONDS past
    `last_note_seconds` (faded out where cut), and normalise the peak to -1 dBFS."""
    loud = np.flatnonzero(np.abs(samples).max(axis=1) > SILENCE)
    if loud.size == 0:
        raise AudioError("the synthesizer produced silence (no notes in the MIDI file?)")
    end = min(len(samples), loud[-1] + 1 + int(RELEASE_SECONDS * rate))
    if last_note_seconds is not None and end > (cap := int((last_note_seconds + MAX_TAIL_SECONDS) * rate)):
        end = cap
        fade = min(end, int(FADE_SECONDS * rate))
        samples = samples[:end].copy()
        samples[end - fade:] *= np.linspace(1.0, 0.0, fade, dtype=samples.dtype)[:, None]
    samples = samples[:end]
    return (samples * (PEAK / np.abs(samples).max())).astype("float32")


def midi_to_audio(midi_path: str | Path, out_path: str | Path, synth: Synth | None = None) -> Audio:
    """Render `midi_path` to `out_path`; the format comes from its suffix (.wav, .mp3, .ogg, .flac)."""
    import soundfile  # lazy: see the module docstring

    midi_path, out_path = Path(midi_path), Path(out_path)
    audio_format = FORMATS.get(out_path.suffix.lower().lstrip("."))
    if audio_format is None:
        raise AudioError(f"unknown audio format {out_path.suffix!r}: use {', '.join(FORMATS)}")
    if not midi_path.is_file():
        raise AudioError(f"MIDI file not found: {midi_path}")
    synth = synth or find_synth()
    render = _render_fluidsynth if synth.route == "fluidsynth" else _render_midirenderer
    samples, rate = render(synth, midi_path, SAMPLE_RATE)
    samples = finish(samples, rate, midi_seconds(midi_path))
    with atomic_open(out_path, "wb") as handle:
        soundfile.write(handle, samples, rate, format=audio_format)
    return Audio(out_path, len(samples) / rate, synth)


def midi_seconds(midi_path: str | Path) -> float:
    """Duration of a MIDI file up to its last note's end (pretty_midi)."""
    import pretty_midi  # lazy: see the module docstring

    return float(pretty_midi.PrettyMIDI(str(midi_path)).get_end_time())
