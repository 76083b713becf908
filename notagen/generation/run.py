"""An inference run: settings -> pieces on disk (ABC, interleaved ABC, MusicXML, MIDI) + a run summary.

Design choices
- Output folders follow the published layout: `<output_dir>/original/<folder>/` (raw text) and
  `<output_dir>/interleaved/<folder>/` (rest-unreduced, stream prefixes and prompt lines removed,
  `X:1` on top), `<folder>` = weights file stem + `_k_<top_k>_p_<top_p>_temp_<temperature>`. MusicXML
  and MIDI go to `xml/<folder>/` and `midi/<folder>/`; pieces stopped by a limit, or whose text
  cannot be interleaved, keep their raw text in `failed/<folder>/`. Nothing is retried: every piece
  gets one line in `summary/<folder>_seed<seed>.json` (status, reason, seconds, chars, files).
- File names are `<prompt>_seed<seed>_<index>`: the same seed and settings give the same pieces and
  the same names, so a rerun overwrites identical files instead of piling up copies.
- Paths follow `notagen.paths`: inputs (weights, prompt files) from the current folder, else the
  repository root; a relative output_dir is under the repository root. A weights path may name a
  folder holding one `weights_notagen_*.pth` (the default: the shipped `weights/embedded/`).
  Nothing is downloaded.
- The ABC converters (`notagen.abc`) are imported only when a piece is written.
"""
from __future__ import annotations

import random
import re
import resource
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch

from ..io import atomic_write_json, atomic_write_text
from ..paths import REPO_ROOT, resolve_input_path, resolve_output_dir, resolve_weights_path
from ..render import RenderSettings, error_reason, export_piece
from ..patchilizer import Patchilizer
from .engine import Engine
from .piece import GenerationSettings, PieceResult, Prompt, PromptError

OUTPUT_FOLDERS = {"musicxml": "xml", "midi": "midi", "svg": "svg", "audio": "audio"}  # kind -> folder
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class SetupError(ValueError):
    """A setting that cannot work (device, dtype, weights path, prompt file)."""


# ---------------------------------------------------------------------------------------------
# Settings -> objects
# ---------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """"auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:N", "mps"; a clear error otherwise."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SetupError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SetupError(f"device {name!r} asked for, but this PyTorch sees no CUDA GPU "
                             f"(torch {torch.__version__}); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SetupError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise SetupError(f"device {name!r} asked for, but Apple MPS is not available here; "
                             f"use --device cpu or auto")
    elif device.type != "cpu":
        raise SetupError(f"unsupported device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """"auto": bfloat16 on a CUDA GPU that supports it (as published), float32 elsewhere."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name not in DTYPES:
        raise SetupError(f"unknown dtype {name!r}: use auto, float32, bfloat16 or float16")
    dtype = DTYPES[name]
    if dtype == torch.float16 and device.type == "cpu":
        raise SetupError("float16 is for GPUs; on cpu use float32 (or bfloat16)")
    return dtype


def _find(path: str | Path) -> Path | None:
    """An input file by the one input rule (`notagen.paths.resolve_input_path`), or None."""
    found = resolve_input_path(path)
    return found.resolve() if found.is_file() else None


def resolve_weights(path: str | Path) -> Path:
    """`notagen.paths.resolve_weights_path` ("" = the shipped checkpoint, a folder = its one weights
    file), its errors as SetupError with the way on."""
    try:
        return resolve_weights_path(path)
    except FileNotFoundError as error:
        if not str(error).startswith("weights file not found"):
            raise SetupError(str(error)) from None
        places = sorted({str(Path.cwd()), str(REPO_ROOT)})
        where = "" if Path(path).is_absolute() else f" (looked in {' and '.join(places)})"
        raise SetupError(f"weights file not found: {path}{where}. Give a checkpoint's path with "
                         f"--inference_weights_path (\"\" = the shipped one), e.g. a published NotaGen file") from None


def load_prompt_list(path: str | Path | None):
    """The `PromptCatalog` of known (period, composer, instrumentation) triples in `path`
    (`period_composer_instrumentation` lines, as the published demo's prompts.txt). None: no list."""
    from ..prompts import PromptCatalog, PromptCatalogError

    if not path:
        return None
    found = _find(path)
    if found is None:
        raise SetupError(f"prompt list not found: {path}")
    try:
        return PromptCatalog.from_file(found)
    except PromptCatalogError as error:
        raise SetupError(str(error)) from None


def default_prompt_list(weights: Path) -> Path | None:
    """A prompts.txt next to the weights, else the demo's list in the repository, if present."""
    for candidate in (weights.parent / "prompts.txt", REPO_ROOT / "gradio" / "prompts.txt"):
        if candidate.is_file():
            return candidate
    return None


def music_file_named(prompt: str) -> Path | None:
    """The music file a prompt names (a name with a music suffix), else None; a missing one is an error."""
    from ..continuation import MUSIC_SUFFIXES

    name = (prompt or "").strip()
    if "\n" in name or len(name) >= 4096 or not name.lower().endswith(MUSIC_SUFFIXES):
        return None
    found = _find(name)
    if found is None:
        raise PromptError(f"music file to continue not found: {name}")
    return found


def generated_abc(path: Path) -> str | None:
    """The text of an .abc file in the model's own generated format (`[r:i/j]` lines), else None."""
    if path.suffix.lower() != ".abc":
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise PromptError(f"{path} is not UTF-8 text: {error}") from None
    return text if any(line.startswith("[r:") for line in text.split("\n")) else None


def parse_prompt(prompt: str, known=None, continue_bars: int = 0) -> Prompt:
    """`period|composer|instrumentation`, free prompt lines (separated by newlines or a literal
    `\\n`), or the path of a music file to continue. Only a name with a music suffix (.abc, .xml,
    .musicxml, .mxl, .mid, .midi) is read as a file: any other text is prompt text. A file in the
    model's generated format is continued as it is; any other is converted (`notagen.continuation`)."""
    found = music_file_named(prompt)
    if found is not None:
        text = generated_abc(found)
        if text is not None:
            return Prompt.from_abc(text)
        from ..continuation import music_to_prompt

        return music_to_prompt(found, (), continue_bars).prompt
    prompt = prompt or ""
    text = prompt.replace("\\n", "\n")
    fields = text.strip().split("|")
    if "\n" not in text.strip() and len(fields) == 3 and all(
            f.strip() and not f.strip().startswith("%") for f in fields):
        result = Prompt.from_triple(*fields)
        if known is not None and result.triple not in known:
            warnings.warn(f"prompt {'|'.join(result.triple)!r} is not one of the {len(known)} "
                          f"period|composer|instrumentation combinations this model knows; "
                          f"generating anyway", stacklevel=2)
        return result
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        raise PromptError("empty prompt: give period|composer|instrumentation, prompt lines, "
                          "or an ABC file to continue")
    return Prompt.from_lines(lines)


def run_prompt(cfg: SimpleNamespace, known=None):
    """(the prompt, the `notagen.continuation.Continuation` it continues or None) of a run:
    `--continue_from FILE` continues the music of FILE (its first `continue_bars` bars), with the
    lines of `--prompt` (a triple or prompt lines; "" for none) in front. `--prompt FILE` works as
    before: a file in the generated format is continued as it is, any other music file is converted."""
    from ..continuation import music_to_prompt

    source = getattr(cfg, "continue_from", "")
    named = music_file_named(cfg.prompt)
    if named is not None and source:
        raise SetupError("--prompt names a music file and --continue_from another: give the music once")
    if named is not None:
        text = generated_abc(named)
        if text is not None:
            return Prompt.from_abc(text), None
        found, lines = named, ()
    elif source:
        found = _find(source)
        if found is None:
            raise PromptError(f"music file to continue not found: {source}")
        lines = parse_prompt(cfg.prompt, known).lines if cfg.prompt.strip() else ()
    else:
        return parse_prompt(cfg.prompt, known), None
    continuation = music_to_prompt(found, lines, getattr(cfg, "continue_bars", 0))
    return continuation.prompt, continuation


def load_generation_model(weights: Path, device: torch.device, dtype: torch.dtype | None = None):
    """The model of a weights file on `device` (dtype None: "auto"); a junk file is a CheckpointError."""
    from ..checkpoint import CheckpointError, load_model

    try:
        return load_model(weights, device=device, dtype=dtype or resolve_dtype("auto", device))
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - torch's unpickler raises odd types for junk files
        raise CheckpointError(f"{weights} is not a readable PyTorch checkpoint: "
                              f"{type(error).__name__}: {error_reason(error)}") from error


def output_folder_name(weights: str | Path, top_k, top_p, temperature) -> str:
    """Published: weights file stem + `_k_<k>_p_<p>_temp_<T>`."""
    return f"{Path(weights).stem}_k_{top_k}_p_{top_p}_temp_{temperature}"


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
    from ..abc import rest_unreduce, split_prompt_lines

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
             "stream_events": result.stream_events, "files": {}}
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
def run_inference(cfg: SimpleNamespace, log=print) -> dict:
    """Generate `cfg.num_samples` pieces and write them; returns the run summary (also on disk)."""
    if getattr(cfg, "num_threads", 0) > 0:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    weights = resolve_weights(cfg.inference_weights_path)
    known = load_prompt_list(cfg.prompt_list or default_prompt_list(weights))
    prompt, continuation = run_prompt(cfg, known)
    if cfg.num_samples < 1:
        raise SetupError("num_samples must be >= 1")
    seed = cfg.seed if cfg.seed >= 0 else random.SystemRandom().randrange(1 << 31)
    settings = GenerationSettings(top_k=cfg.top_k, top_p=cfg.top_p, temperature=cfg.temperature,
                                  greedy=cfg.greedy, seed=seed, max_chars=cfg.max_chars,
                                  max_seconds=cfg.max_seconds, max_empty_patches=cfg.max_empty_patches,
                                  batch_size=cfg.batch_size)
    out = resolve_output_dir(cfg.output_dir)
    folder = output_folder_name(weights, cfg.top_k, cfg.top_p, cfg.temperature)
    slug = prompt_slug(prompt, continuation.source if continuation else cfg.prompt)
    render = render_settings(cfg)

    started = time.monotonic()
    model = load_generation_model(weights, device, dtype)
    c = model.config
    log(f"model {weights.name}: {c.patch_num_layers}+{c.char_num_layers} layers, hidden {c.hidden_size}, "
        f"context {c.patch_length} patches; {device} {str(dtype).replace('torch.', '')}; seed {seed}")
    if continuation is not None:
        log(f"continuing {Path(continuation.source).name}: {continuation.bars_given} of its "
            f"{continuation.bars_in_file} bars given, the model writes from bar {continuation.bars_given + 1}")
        context = len(Patchilizer(c.patch_size).encode_generate(prompt.prompt_text, 1 << 30))
        if context > c.patch_length:
            log(f"the music to continue fills {context} patches, the context holds {c.patch_length}: the model "
                f"sees its metadata and the last bars that fit")
    log(f"generating {cfg.num_samples} piece(s), {settings.batch_size} at a time")
    engine = Engine(model)
    generation_started = time.monotonic()
    show_text = cfg.stream and settings.batch_size == 1
    entries = []
    for event in engine.stream([prompt] * cfg.num_samples, settings):
        if show_text and event.text:
            print(event.text, end="", flush=True)
        if event.result is None:
            continue
        name = f"{slug}_seed{seed}_{event.piece:04d}"
        entry = write_piece(event.result, name, out, folder, cfg.convert, render)
        entries.append(entry)
        if show_text:
            print()
        note = f" ({entry['reason']})" if entry["reason"] else ""
        log(f"[{len(entries)}/{cfg.num_samples}] piece {event.piece}: {entry['status']}{note}, "
            f"{entry['chars']} chars, {entry['patches']} patches, {entry['seconds']:.1f} s")
    total = time.monotonic() - started
    generating = time.monotonic() - generation_started
    patches = sum(e["patches"] for e in entries)
    summary = {
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
        "pieces": sorted(entries, key=lambda e: e["index"]),
    }
    summary_path = out / "summary" / f"{folder}_seed{seed}.json"
    atomic_write_json(summary_path, summary)
    summary["summary_path"] = str(summary_path)
    log(f"done in {total:.1f} s: " + ", ".join(f"{n} {s}" for s, n in summary["counts"].items() if n))
    for key, label in (("original", "ABC"), ("interleaved", "ABC, interleaved"), ("musicxml", "MusicXML"),
                       ("midi", "MIDI"), ("svg", "score pages (SVG)"), ("audio", "audio"),
                       ("failed", "failed pieces")):
        count = sum(key in e["files"] for e in entries)
        if count:
            log(f"{label + ':':19} {out / OUTPUT_FOLDERS.get(key, key) / folder}  "
                f"({count} piece{'s' * (count != 1)})")
    log(f"{'run summary:':19} {summary_path}")
    return summary


def main(config_path: str | Path, argv: list[str] | None = None) -> int:
    """Command line entry: settings from `config_path` + `--name value` overrides."""
    from ..io import DiskFullError
    from ..settings import parse_settings

    cfg = parse_settings(config_path, argv, description="Generate music with a NotaGen checkpoint.")
    warnings.simplefilter("always", UserWarning)
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    try:
        run_inference(cfg)
    except (ValueError, FileNotFoundError, DiskFullError) as error:  # setup, prompt, checkpoint, settings
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0

