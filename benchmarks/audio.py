"""Benchmark the two MIDI -> audio routes on a real chorale: midirenderer + pretty_midi's TimGM6mb
(pip only, the baseline) against fluidsynth + the system FluidR3_GM soundfont (where installed),
WAV and MP3, best of --repeat runs each.

    python benchmarks/audio.py [--repeat 3]

Prints seconds per render, the ratio to the baseline and the audio's length against the MIDI's.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from notagen.abc import abc_to_midi  # noqa: E402
from notagen.audio import AudioError, find_synth, midi_seconds, midi_to_audio  # noqa: E402
from notagen.paths import VECTORS_DIR as VECTORS  # noqa: E402

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    items = json.loads((VECTORS / "data_pipeline.json").read_text())["items"]
    chorale = next(item for item in items if item["source"] == "bach/bwv269.mxl")["interleaved"]
    with tempfile.TemporaryDirectory() as tmp:
        midi = abc_to_midi(chorale, Path(tmp) / "bwv269.mid")
        print(f"bwv269: MIDI {midi_seconds(midi):.1f} s")
        baseline = {}
        for route in ("midirenderer", "fluidsynth"):
            try:
                synth = find_synth(route)
            except AudioError as error:
                print(f"{route}: not available ({error})")
                continue
            for audio_format in ("wav", "mp3"):
                times = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    audio = midi_to_audio(midi, Path(tmp) / f"out.{audio_format}", synth)
                    times.append(time.perf_counter() - started)
                best = min(times)
                baseline.setdefault(audio_format, best)
                print(f"{route:12} {audio_format}: {best:.2f} s (x{baseline[audio_format] / best:.2f} vs midirenderer), "
                      f"audio {audio.seconds:.1f} s, {Path(synth.soundfont).name}")
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    main()
