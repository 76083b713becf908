"""Do pieces written under key, meter and bar controls have them, as music21 reads the MusicXML?

    python benchmarks/controls.py                      # runs inference.py with the command below, then checks
    python benchmarks/controls.py --summary output/summary/<run>.json   # checks a run made before

The run is `inference/inference.py --prompt "Baroque|Bach, Johann Sebastian|Choral" --key Dm
--meter 3/4 --bars 12 --num_samples 4 --seed 0` with the shipped checkpoint (`--key`, `--meter`,
`--bars`, `--prompt`, `--num_samples`, `--seed` change it), one torch thread, into a temporary folder.
A piece passes when its MusicXML (written by the run) reads in music21 as: the chosen key (e.g.
"d minor"), the chosen time signature, the chosen number of measures in every part (one more with a
pickup: a first measure shorter than the meter), and every inner measure (not the first, not the
last) lasting the meter. One line a piece, then the count.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default="Baroque|Bach, Johann Sebastian|Choral")
    parser.add_argument("--key", default="Dm")
    parser.add_argument("--meter", default="3/4")
    parser.add_argument("--bars", type=int, default=12)
    parser.add_argument("--num_samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--summary", default="", help="check this run summary instead of running inference")
    parser.add_argument("--output_dir", default="", help="keep the run's files here (default: a temporary folder)")
    return parser.parse_args(argv)


def music21_key_name(key: str) -> str:
    """The name music21 gives an ABC key of this project's spelling: Dmin -> "d minor", Eb -> "E- major"."""
    from notagen.generation.controls import normal_key

    spelt = normal_key(key)
    accidental = spelt[1:2] if spelt[1:2] in ("b", "#") else ""
    tonic = spelt[0] + accidental.replace("b", "-")
    mode = {"": "major", "min": "minor", "dor": "dorian", "phr": "phrygian", "lyd": "lydian", "mix": "mixolydian",
            "loc": "locrian"}[spelt[1 + len(accidental):]]
    return f"{tonic.lower() if mode == 'minor' else tonic} {mode}"


def check_piece(musicxml: Path, key: str, meter: str, bars: int) -> list[str]:
    """What the score lacks of the controls (empty: it has them all)."""
    import music21

    score = music21.converter.parse(str(musicxml))
    problems = []
    keys = {str(k) for k in score.recurse().getElementsByClass(music21.key.Key)}
    if keys != {music21_key_name(key)}:
        problems.append(f"key {sorted(keys)}")
    meters = {ts.ratioString for ts in score.recurse().getElementsByClass(music21.meter.TimeSignature)}
    if meters != {meter.replace("C|", "2/2").replace("C", "4/4")}:
        problems.append(f"meter {sorted(meters)}")
    bar = Fraction(score.recurse().getElementsByClass(music21.meter.TimeSignature).first().barDuration.quarterLength)
    for part in score.parts:
        measures = list(part.getElementsByClass(music21.stream.Measure))
        pickup = Fraction(measures[0].duration.quarterLength) < bar
        if len(measures) != bars + pickup:
            problems.append(f"{part.partName or part.id}: {len(measures)} measures{' (pickup)' if pickup else ''}")
        wrong = [m.number for m in measures[1:-1] if Fraction(m.duration.quarterLength) != bar]
        if wrong:
            problems.append(f"{part.partName or part.id}: measures {wrong} do not last {bar} quarters")
    return problems


def main(argv=None) -> int:
    args = arguments(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.output_dir or scratch
        summary_path = Path(args.summary)
        if not args.summary:
            command = [sys.executable, str(REPO / "inference" / "inference.py"), "--prompt", args.prompt,
                       "--key", args.key, "--meter", args.meter, "--bars", str(args.bars),
                       "--num_samples", str(args.num_samples), "--seed", str(args.seed), "--num_threads", "1",
                       "--stream", "false", "--output_dir", folder]
            print(" ".join(command[1:]), flush=True)
            subprocess.run(command, check=True)
            summary_path = max(Path(folder, "summary").glob("*.json"), key=lambda path: path.stat().st_mtime)
        summary = json.loads(summary_path.read_text())
        passed = 0
        for piece in summary["pieces"]:
            musicxml = piece["files"].get("musicxml")
            problems = check_piece(Path(musicxml), args.key, args.meter, args.bars) if musicxml else [
                f"no MusicXML ({piece['status']}: {piece['reason']})"]
            passed += not problems
            print(f"piece {piece['index']}: {'ok' if not problems else '; '.join(problems)} "
                  f"({piece['seconds']:.1f} s, {piece['patches']} patches, {piece['resampled_lines']} rewrites)")
        print(f"{passed} of {len(summary['pieces'])} pieces have key {args.key}, meter {args.meter} and "
              f"{args.bars} bars in every part")
    return 0


if __name__ == "__main__":
    sys.exit(main())
