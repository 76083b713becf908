"""Does a checkpoint write the texture its prompt asks for? Issue 43's check, per prompt.

    python benchmarks/prompt_following.py                          # the shipped checkpoint
    python benchmarks/prompt_following.py --weights runs/shipped/finetune --num_samples 6 --seed 0
    python benchmarks/prompt_following.py --output_dir runs/check  # keep the pieces (a run there is reused)

For each prompt (default: Bach chorale, Schubert and Brahms art songs, a Haydn quartet) it runs
`inference/inference.py` at its defaults (seed, num_samples and weights as given; one torch thread)
and reads every piece back: the texture its own header writes (`notagen.texture`: a choir, one singer
with piano, an instrumental ensemble, ...) against the prompt's instrumentation, and whether it is
usable by the evaluation's strict rule (finished, converted, every part's bars aligned,
`notagen.evaluation.check_piece`). One line a prompt, then the totals.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from notagen.evaluation import check_piece, read_pieces
from notagen.texture import texture

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ("Baroque|Bach, Johann Sebastian|Choral", "Romantic|Schubert, Franz|Art Song",
           "Romantic|Brahms, Johannes|Art Song", "Classical|Haydn, Joseph|Chamber")


def arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="", help="checkpoint (\"\" = the shipped one)")
    parser.add_argument("--prompts", nargs="+", default=list(PROMPTS))
    parser.add_argument("--prompt_list", default="", help="prompts the model is checked against (\"\" = its prompts.txt; "
                        "gradio/prompts.txt for a model that does not know these prompts)")
    parser.add_argument("--num_samples", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default="", help="keep the pieces here (default: a temporary folder)")
    return parser.parse_args(argv)


def generate(args, prompt: str, out: Path) -> None:
    """inference.py for one prompt into `out`, unless a run there already wrote its pieces."""
    if (out / "summary").is_dir() and any((out / "summary").glob("*.json")):
        return
    command = [sys.executable, str(REPO / "inference/inference.py"), "--inference_weights_path", args.weights,
               "--prompt", prompt, "--num_samples", str(args.num_samples), "--batch_size", str(args.num_samples),
               "--seed", str(args.seed), "--output_dir", str(out), "--stream", "false", "--convert", "false",
               "--num_threads", "1", "--prompt_list", args.prompt_list]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def check(folder: Path, instrumentation: str) -> tuple[int, int, int, list[str]]:
    """(pieces, in the requested texture, usable, texture labels) of one prompt's run."""
    pieces = read_pieces(folder)
    labels, follows, usable = [], 0, 0
    for piece in pieces:
        label, adheres = texture(piece.text, instrumentation)
        labels.append(label or "?")
        follows += bool(adheres)
        usable += check_piece(piece).usable
    return len(pieces), follows, usable, labels


def main(argv=None) -> int:
    args = arguments(argv)
    root = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix="prompt_following_"))
    totals = [0, 0, 0]
    print(f"{'prompt':45} {'texture':>8} {'usable':>8}  textures written")
    for index, prompt in enumerate(args.prompts):
        folder = root / f"prompt_{index}"
        generate(args, prompt, folder)
        count, follows, usable, labels = check(folder, prompt.split("|")[2])
        totals = [totals[0] + count, totals[1] + follows, totals[2] + usable]
        print(f"{prompt:45} {follows:>4}/{count:<3} {usable:>4}/{count:<3}  {', '.join(labels)}")
    count, follows, usable = totals
    print(f"all: requested texture {follows}/{count} ({follows / count:.0%}), usable {usable}/{count} "
          f"({usable / count:.0%}); pieces under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
