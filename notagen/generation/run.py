"""An inference run: settings -> pieces on disk (ABC, interleaved ABC, MusicXML, MIDI) + a run summary.

Design choices
- Output folders follow the published layout: `<output_dir>/original/<folder>/` (raw text) and
  `<output_dir>/interleaved/<folder>/` (rest-unreduced, stream prefixes and prompt lines removed,
  `X:1` on top), `<folder>` = weights file stem + `_k_<top_k>_p_<top_p>_temp_<temperature>`. MusicXML
  and MIDI go to `xml/<folder>/` and `midi/<folder>/`; pieces stopped by a limit, or whose text
  cannot be interleaved, keep their raw text in `failed/<folder>/`. Nothing is retried: every piece
  gets one line in `summary/<folder>_<prompt>_seed<seed>.json` (status, reason, seconds, chars, files).
- `--prompt all` writes `num_samples` pieces for every prompt of the prompt list in one stream
  (the evaluation across a model's prompts), each prompt with its own summary.
- File names are `<prompt>_seed<seed>_<index>`: the same seed and settings give the same pieces and
  the same names, so a rerun overwrites identical files instead of piling up copies.
- Paths follow `notagen.paths`: inputs (weights, prompt files) from the current folder, else the
  repository root; a relative output_dir is under the repository root. A weights path may name a
  folder holding one `weights_notagen_*.pth` (the default: the shipped `weights/embedded/`).
  Nothing is downloaded.
- Under `accelerate launch` each process writes its share of the pieces (`notagen.launch`:
  `processes`, `shared_seed`, `gathered`); rank 0 writes the summaries.
"""
from __future__ import annotations

import re
import resource
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import torch

from ..abc.text import split_prompt_lines
from ..abc.unreduce import rest_unreduce
from ..io import DiskFullError, atomic_write_json, atomic_write_text
from ..launch import end_processes, gathered, processes, shared_seed
from ..patchilizer import Patchilizer
from ..paths import resolve_output_dir
from ..render import RenderSettings, error_reason, export_piece
from ..settings import apply_num_threads, parse_settings
from .engine import engine_for
from .piece import GenerationSettings, PieceResult
from .prompt import Prompt
# the settings helpers, also importable from here (the demo and tests do)
from .setup import (SetupError, default_prompt_list, load_generation_model, load_prompt_list,  # noqa: F401
                    parse_prompt, resolve_device, resolve_dtype, resolve_weights, run_prompt)

OUTPUT_FOLDERS = {"musicxml": "xml", "midi": "midi", "svg": "svg", "audio": "audio"}  # kind -> folder


def output_folder_name(weights: str | Path, top_k, top_p, temperature) -> str:
    """Published: weights file stem + `_k_<k>_p_<p>_temp_<T>` (a checkpoint folder's name for its model.safetensors)."""
    weights = Path(weights)
    name = weights.parent.name if weights.name == "model.safetensors" else weights.stem
    return f"{name}_k_{top_k}_p_{top_p}_temp_{temperature}"


def prompt_slug(prompt: Prompt, source: str = "") -> str:
    if prompt.triple:
        raw = "_".join(prompt.triple)
    elif prompt.text is not None:
        raw = Path(source.strip()).stem + "_continued" if source.strip() else "continued"
    else:
        raw = "_".join(line.strip("%\n ") for line in prompt.lines[:3]) or "prompt"
    slug = re.sub(r"[^A-Za-z0-9]+", "_", raw).strip("_")
    return slug[:80] or "prompt"


def peak_memory(device: torch.device) -> dict:
    """Peak memory so far: CUDA allocator peak on a GPU, process max RSS always."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info = {"cpu_max_rss_mib": round(rss / (1024 if sys.platform != "darwin" else 1024 * 1024), 1)}
    if device.type == "cuda":
        info["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return info


# ---------------------------------------------------------------------------------------------
# Writing one piece
# ---------------------------------------------------------------------------------------------
def interleaved_text(text: str) -> str:
    """Published post-processing: rest-unreduce, drop prompt lines and stream prefixes, `X:1` on top."""
    _, body = split_prompt_lines(text)
    unreduced = rest_unreduce(body)
    return unreduced if unreduced.startswith("X:") else "X:1\n" + unreduced


def render_settings(cfg: SimpleNamespace):
    """The score-page and audio settings of a stage's config (`render`, `audio_format`, `synth`, `soundfont`)."""
    render = bool(getattr(cfg, "render", False))
    return RenderSettings(svg=render, audio=render, audio_format=getattr(cfg, "audio_format", "mp3"),
                          synth=getattr(cfg, "synth", "auto"), soundfont=getattr(cfg, "soundfont", ""))


def write_piece(result: PieceResult, name: str, out: Path, folder: str, convert: bool,
                render: RenderSettings | None = None) -> dict:
    """Files for one piece; returns its summary entry. `convert`: MusicXML and MIDI; `render`
    (a `notagen.render.RenderSettings`): score pages and audio too."""
    entry = {"index": result.index, "name": name, "status": "ok", "reason": "",
             "seconds": round(result.seconds, 3), "chars": result.chars, "patches": result.patches,
             "stream_events": result.stream_events, "resampled_lines": result.resampled_lines, "files": {}}
    files = entry["files"]
    if not result.ok:
        entry.update(status="failed", reason=result.reason)
        files["failed"] = str(out / "failed" / folder / f"{name}.abc")
        atomic_write_text(files["failed"], result.text)
        return entry
    try:
        interleaved = interleaved_text(result.text)
    except Exception as error:  # noqa: BLE001 - any converter failure is recorded, not raised
        entry.update(status="failed", reason=f"rest_unreduce: {error_reason(error)}")
        files["failed"] = str(out / "failed" / folder / f"{name}.abc")
        atomic_write_text(files["failed"], result.text)
        return entry
    files["original"] = str(out / "original" / folder / f"{name}.abc")
    atomic_write_text(files["original"], result.text)
    files["interleaved"] = str(out / "interleaved" / folder / f"{name}.abc")
    atomic_write_text(files["interleaved"], interleaved)
    if convert:
        rendered = export_piece(interleaved, lambda kind, suffix: out / OUTPUT_FOLDERS[kind] / folder / f"{name}{suffix}",
                                render)
        files.update(rendered.files)
        if rendered.audio_seconds is not None:
            entry["audio_seconds"] = rendered.audio_seconds
        if rendered.problems:
            entry.update(status="conversion_failed", reason="; ".join(rendered.problems))
    return entry


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def generation_settings(cfg: SimpleNamespace, seed: int) -> GenerationSettings:
    return GenerationSettings(top_k=cfg.top_k, top_p=cfg.top_p, temperature=cfg.temperature, greedy=cfg.greedy,
                              seed=seed, max_chars=cfg.max_chars, max_seconds=cfg.max_seconds,
                              max_empty_patches=cfg.max_empty_patches, batch_size=cfg.batch_size,
                              bar_retries=cfg.bar_retries, header_retries=cfg.header_retries, guidance=cfg.guidance,
                              stall_seconds=cfg.stall_seconds, key=cfg.key, meter=cfg.meter, tempo=cfg.tempo,
                              bars=cfg.bars)


def run_inference(cfg: SimpleNamespace, log=print) -> dict:
    """Generate `cfg.num_samples` pieces and write them; returns the run summary (also on disk).
    Under `accelerate launch` each process writes its share (`Processes.share`); rank 0 the summary.
    `--prompt all` runs every prompt of the prompt list in one stream: piece k of prompt p is piece
    p * num_samples + k of the stream (its seed), named `_<k>`, with a summary per prompt as
    separate runs write; it returns their counts."""
    apply_num_threads(cfg)
    procs = processes(resolve_device(cfg.device), cfg.device)
    device = procs.device
    dtype = resolve_dtype(cfg.dtype, device)
    weights = resolve_weights(cfg.inference_weights_path)
    known = load_prompt_list(cfg.prompt_list or default_prompt_list(weights))
    if cfg.num_samples < 1:
        raise SetupError("num_samples must be >= 1")
    every = (cfg.prompt or "").strip().lower() == "all"
    if every:
        prompts, continuation = every_prompt(cfg, known), None
        slugs = [prompt_slug(prompt) for prompt in prompts]
    else:
        prompt, continuation = run_prompt(cfg, known)
        prompts, slugs = [prompt], [prompt_slug(prompt, continuation.source if continuation else cfg.prompt)]
    seed = shared_seed(cfg.seed, procs)
    settings = generation_settings(cfg, seed)
    if any(p.text is not None for p in prompts) and (settings.key or settings.meter or settings.tempo):
        raise SetupError("--key, --meter and --tempo write a new piece's header; a continued piece keeps its "
                         "own (--bars works)")
    out = resolve_output_dir(cfg.output_dir)
    folder = output_folder_name(weights, cfg.top_k, cfg.top_p, cfg.temperature)
    render = render_settings(cfg)
    if procs.rank > 0:
        log = lambda *_: None  # noqa: E731 - one voice: rank 0 reports for all

    started = time.monotonic()
    model = load_generation_model(weights, device, dtype)
    c = model.config
    log(f"model {weights.name}: {c.describe()}; {device} {str(dtype).replace('torch.', '')}; seed {seed}"
        + (f"; {procs.count} processes" if procs.count > 1 else ""))
    if continuation is not None:
        log_continuation(continuation, prompts[0], c, log)
    n = cfg.num_samples
    log(f"generating {n} piece(s)" + (f" for each of the {len(prompts)} prompts of {known.source}" if every else "")
        + f", {settings.batch_size} at a time")
    generation_started = time.monotonic()
    mine = procs.share(n * len(prompts))
    show_text = cfg.stream and settings.batch_size == 1 and procs.count == 1
    entries: list[list[dict]] = [[] for _ in prompts]
    for event in engine_for(model).stream([prompts[i // n] for i in mine], settings, indices=mine):
        if show_text and event.text:
            print(event.text, end="", flush=True)
        if event.result is None:
            continue
        which, k = divmod(event.piece, n)
        entry = write_piece(event.result, f"{slugs[which]}_seed{seed}_{k:04d}", out, folder, cfg.convert, render)
        entries[which].append(entry)
        if show_text:
            print()
        shown = f"{'|'.join(prompts[which].triple)} " if every else ""
        log(f"[{sum(map(len, entries))}/{len(mine)}] {shown}piece {k}: {piece_line(entry)}")
    generating = time.monotonic() - generation_started
    summaries = []
    for which, prompt in enumerate(prompts):
        ran = SimpleNamespace(**{**vars(cfg), "prompt": "|".join(prompt.triple)}) if every else cfg
        summary = run_summary(ran, weights, device, dtype, seed, prompt, continuation,
                              gathered(entries[which], procs), time.monotonic() - started, generating)
        summary_path = out / "summary" / f"{folder}_{slugs[which]}_seed{seed}.json"  # one per prompt: runs can share a folder
        if procs.rank == 0:
            atomic_write_json(summary_path, summary)
        summary["summary_path"] = str(summary_path)
        summaries.append(summary)
    if not every:
        log_outputs(summaries[0], out, folder, Path(summaries[0]["summary_path"]), log)
        return summaries[0]
    counts = Counter()
    for summary in summaries:
        counts.update(summary["counts"])
    log(f"done in {time.monotonic() - started:.1f} s: " + ", ".join(f"{c} {s}" for s, c in counts.items() if c)
        + f"; a summary per prompt in {out / 'summary'}")
    return {"prompts": len(prompts), "counts": dict(counts), "seconds": round(time.monotonic() - started, 3)}


def piece_line(entry: dict) -> str:
    """How one written piece ended, for the run's log."""
    note = (f" ({entry['reason']})" if entry["reason"] else "") + (
        f", {entry['resampled_lines']} bar lines written again" if entry["resampled_lines"] else "")
    return f"{entry['status']}{note}, {entry['chars']} chars, {entry['patches']} patches, {entry['seconds']:.1f} s"


def every_prompt(cfg: SimpleNamespace, known) -> list[Prompt]:
    """The prompts of `--prompt all`: every triple of the prompt list."""
    if getattr(cfg, "continue_from", ""):
        raise SetupError("--prompt all writes new pieces for every known prompt; it does not continue a file")
    if known is None:
        raise SetupError("--prompt all needs a prompt list (PROMPT_LIST, or a prompts.txt beside the weights)")
    return [Prompt.from_triple(*triple) for triple in known.triples]


def log_continuation(continuation, prompt: Prompt, c, log) -> None:
    log(f"continuing {Path(continuation.source).name}: {continuation.bars_given} of its "
        f"{continuation.bars_in_file} bars given, the model writes from bar {continuation.bars_given + 1}")
    context = len(Patchilizer(c.patch_size).encode_generate(prompt.prompt_text, 1 << 30))
    if context > c.patch_length:
        log(f"the music to continue fills {context} patches, the context holds {c.patch_length}: the model "
            f"sees its metadata and the last bars that fit")


def run_summary(cfg, weights, device, dtype, seed, prompt, continuation, entries, total, generating) -> dict:
    patches = sum(e["patches"] for e in entries)
    return {
        "weights": str(weights), "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "seed": seed, "prompt": cfg.prompt, "prompt_lines": list(prompt.lines),
        "settings": {**vars(cfg), "seed": seed},  # `--config <summary>` repeats this run
        "seconds": round(total, 3), "generation_seconds": round(generating, 3),
        "patches_per_second": round(patches / generating, 3) if generating else None,
        "memory": peak_memory(device),
        "continuation": None if continuation is None else {
            "file": continuation.source, "bars_given": continuation.bars_given,
            "bars_in_file": continuation.bars_in_file, "continues_at_bar": continuation.bars_given + 1},
        "counts": {s: sum(e["status"] == s for e in entries) for s in ("ok", "conversion_failed", "failed")},
        "pieces": entries,
    }


def log_outputs(summary: dict, out: Path, folder: str, summary_path: Path, log) -> None:
    entries = summary["pieces"]
    log(f"done in {summary['seconds']:.1f} s: " + ", ".join(f"{n} {s}" for s, n in summary["counts"].items() if n))
    for key, label in (("original", "ABC"), ("interleaved", "ABC, interleaved"), ("musicxml", "MusicXML"),
                       ("midi", "MIDI"), ("svg", "score pages (SVG)"), ("audio", "audio"),
                       ("failed", "failed pieces")):
        count = sum(key in e["files"] for e in entries)
        if count:
            log(f"{label + ':':19} {out / OUTPUT_FOLDERS.get(key, key) / folder}  "
                f"({count} piece{'s' * (count != 1)})")
    log(f"{'run summary:':19} {summary_path}")


def main(config_path: str | Path, argv: list[str] | None = None) -> int:
    """Command line entry: settings from `config_path` + `--name value` overrides."""
    cfg = parse_settings(config_path, argv, description="Generate music with a NotaGen checkpoint.")
    warnings.simplefilter("always", UserWarning)
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    try:
        run_inference(cfg)
        end_processes()
    except (ValueError, FileNotFoundError, DiskFullError) as error:  # setup, prompt, checkpoint, settings
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0

