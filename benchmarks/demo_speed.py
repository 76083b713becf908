"""Benchmark the demo's generation as a user meets it: time to the first streamed text, and finished
pieces per minute with N variations generated together against one at a time (the baseline,
same process, as many pieces), including each piece's score pages and audio.

    python benchmarks/demo_speed.py                         # the demo's default checkpoint
    python benchmarks/demo_speed.py --weights path.pth --pieces 8 --variations 4

Runs go to a temporary folder. Prints one line per setting and the ratio.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from notagen.demo.session import DemoBackend, DemoRequest  # noqa: E402
from notagen.paths import REPO_ROOT as REPO  # noqa: E402
from notagen.settings import parse_settings  # noqa: E402

def run(backend: DemoBackend, lines, pieces: int, variations: int, temperature: float) -> dict:
    first_text, finished, started = [], 0, time.monotonic()
    for seed in range(0, pieces, variations):
        request = DemoRequest(prompt_lines=lines, seed=seed, variations=variations, temperature=temperature)
        asked, first = time.monotonic(), None
        for progress in backend.generate(request):
            if first is None and progress.patches > 0:  # the first generated patch reached the page
                first = time.monotonic() - asked
        first_text.append(first)
        finished += sum(v.status == "finished" for v in progress.variations)
    seconds = time.monotonic() - started
    return {"seconds": seconds, "pieces_per_minute": 60 * pieces / seconds, "finished": finished,
            "first_text": sum(first_text) / len(first_text)}

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="", help="checkpoint (default: the demo's default)")
    parser.add_argument("--pieces", type=int, default=8, help="pieces per setting")
    parser.add_argument("--variations", type=int, default=4, help="variations generated together")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--prompt", default="Baroque|Bach, Johann Sebastian|Choral")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        cfg = parse_settings(REPO / "gradio" / "config.py",
                             ["--weights_path", args.weights, "--output_dir", out, "--num_threads", str(args.threads),
                              "--stream_interval", "0"])
        import torch

        torch.set_num_threads(args.threads)
        backend = DemoBackend(cfg, log=print)
        lines = tuple(f"%{field}" for field in args.prompt.split("|"))
        results = {}
        for variations in (1, args.variations):
            results[variations] = r = run(backend, lines, args.pieces, variations, args.temperature)
            print(f"{variations} variation(s) at a time: {r['pieces_per_minute']:.1f} pieces/min "
                  f"({r['finished']} of {args.pieces} finished with score and audio), first streamed text after "
                  f"{r['first_text'] * 1000:.0f} ms, {r['seconds']:.1f} s in all", flush=True)
        ratio = results[args.variations]["pieces_per_minute"] / results[1]["pieces_per_minute"]
        print(f"{args.variations} together vs one at a time: x{ratio:.2f} pieces/min")

if __name__ == "__main__":
    main()
