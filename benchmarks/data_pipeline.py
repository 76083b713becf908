"""Throughput of the data scripts on the embedded corpus: files/s with 1 worker and with every core.

Takes `--limit` MusicXML scores of music21's corpus, picked round-robin across its collections
(chorales, madrigals, string quartet movements, trecento, ...), and times stage 1 (xml2abc) on
them, then stage 2 (clean + interleave + 15 transpositions) on the ABC that stage 1 produced.
Each timing starts from empty output folders, so nothing is skipped as already done. Besides
files/s (wall clock) it prints the CPU seconds per file (workers + parent) and the load average:
on a shared machine the wall-clock speed-up is bounded by the cores other programs leave free.
Usage: python benchmarks/data_pipeline.py [--limit 60] [--seed 0] [--workers 0]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from notagen.abc.corpus import round_robin  # noqa: E402
from notagen.abc.corpus_sources import corpus_root, find_corpus_pieces  # noqa: E402
from notagen.abc.pipeline import preprocess_folder, xml2abc_folder  # noqa: E402

def musicxml_sample(limit: int, seed: int) -> list[Path]:
    root = corpus_root()
    by_collection = defaultdict(list)
    for piece in find_corpus_pieces(root):
        if piece.source.lower().endswith((".mxl", ".xml", ".musicxml")):
            by_collection[piece.collection].append(root / piece.source)
    return round_robin(by_collection, limit, seed)

def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the workers are joined by then)."""
    return sum(usage.ru_utime + usage.ru_stime for usage in
               (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))

def timed(stage, workers: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, files done) of one run of `stage`."""
    started, cpu_started = time.perf_counter(), cpu_seconds()
    report = stage(workers)
    return time.perf_counter() - started, cpu_seconds() - cpu_started, len(report.converted)

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=60, help="number of MusicXML scores")
    parser.add_argument("--seed", type=int, default=0, help="seed of the score choice")
    parser.add_argument("--workers", type=int, default=0, help="the 'all cores' run (0 = every core)")
    args = parser.parse_args()
    all_cores = args.workers or os.cpu_count()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "xml").mkdir()
        for index, path in enumerate(musicxml_sample(args.limit, args.seed)):
            shutil.copy(path, scratch / "xml" / f"{index:04d}_{path.name}")  # unique names

        def xml2abc(workers: int):
            shutil.rmtree(scratch / "abc", ignore_errors=True)
            return xml2abc_folder(scratch / "xml", scratch / "abc", workers=workers, progress=False)

        def preprocess(workers: int):
            for folder in ("interleaved", "augmented"):
                shutil.rmtree(scratch / folder, ignore_errors=True)
            return preprocess_folder(scratch / "abc", scratch / "interleaved", scratch / "augmented",
                                     workers=workers, progress=False)[0]

        print(f"{args.limit} MusicXML scores from music21's corpus, {os.cpu_count()} cores, "
              f"load average before: {os.getloadavg()[0]:.2f}")
        # a stage-2 "file" is one input piece (it writes 16 files: interleaved + 15 keys)
        for label, stage in (("stage 1 xml2abc", xml2abc), ("stage 2 preprocess", preprocess)):
            serial_seconds, serial_cpu, done = timed(stage, 1)
            parallel_seconds, parallel_cpu, _ = timed(stage, all_cores)
            print(f"{label:20s} {done:4d} files   1 worker: {done / serial_seconds:6.2f} files/s "
                  f"({serial_cpu / done:.3f} CPU-s/file)   {all_cores} workers: {done / parallel_seconds:6.2f} "
                  f"files/s ({parallel_cpu / done:.3f} CPU-s/file)   speed-up x{serial_seconds / parallel_seconds:.2f}")

if __name__ == "__main__":
    main()
