"""The demo's work without the web page: load a checkpoint, generate variations as a stream of
progress snapshots, finish each piece into files, re-render edited text. The page (`page.py`)
only turns these snapshots into components, so everything here is testable without a browser.

Design choices
- One `DemoBackend` per server: one model, one engine, one lock, so one generation runs at a
  time per device (the page's queue also limits it); a second request waits for the lock.
- `generate` is a generator of `Progress` snapshots: the engine's text as it is yielded (no
  stdout), throttled to `stream_interval`; every `score_every_bars` bars the shown variation's
  score is engraved again from its complete lines. The engine's `watch` hook shows the line being
  written too (`Variation.draft`: the bar check may still take it back) and how often it has been
  written again, so the page moves while the checks rewrite a line. Setting the `stop` event ends
  the engine's stream at the next patch (its generator is closed, so no more work is done).
- Controls (key, meter, tempo, bars: `notagen/generation/controls.py`) go to the engine's settings;
  a continued piece (an upload, or "rewrite from bar N" of the piece on screen, through
  `notagen.continuation`) keeps its own key, meter and tempo, and a chosen meter then checks its
  bars against its own `M:`.
- A piece with no new bar for `stall_seconds` ends as "stalled" (the engine's `no_new_bar`), so the
  one generation slot is free for the next user; its complete bars get their score, audio and
  files, its raw text is kept.
- Reasons are kept as the engine and converters give them (settings.json); `plain_reason` says
  them in plain words for the page, the converter's detail beside.
- Every run gets its own folder under `output_dir` (`<time>_seed<seed>`, never reused), holding
  `settings.json` (settings, seed, prompt, weights, per-variation results) and each variation's
  files: raw text, interleaved ABC, MusicXML, MIDI, audio, score pages (`notagen.render`, the
  code path of `inference.py --render true`).
- Nothing is retried: a piece stopped by a limit, or whose text does not convert, keeps its raw
  text and shows the reason.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

from ..abc.convert import abc_to_svg_pages
from ..checkpoint import load_model
from ..continuation import music_to_prompt
from ..generation.engine import engine_for
from ..generation.piece import GenerationSettings
from ..generation.prompt import Prompt, PromptError, split_header
from ..generation.run import interleaved_text
from ..generation.setup import (SetupError, default_prompt_list, load_prompt_list, resolve_device, resolve_dtype,
                                resolve_weights)
from ..io import atomic_write_json, atomic_write_text
from ..paths import resolve_output_dir
from ..render import RenderSettings, error_reason, export_piece

STALLED = ("no_new_bar", "stalled")  # engine reasons that finish a piece as stalled
RATE_WINDOW = 3.0  # seconds of patches the status line's patches/s counts


def plain_reason(variation: "Variation", cfg: SimpleNamespace) -> tuple[str, str]:
    """(why a variation failed, stalled or has no score, in plain words; the engine's or converter's
    own words when they say more)."""
    parts = [part for part in variation.reason.split("; ") if part]
    words = {
        "no_new_bar": f"no new bar for {cfg.stall_seconds:g} s: the model kept rewriting bar {variation.bars + 1} "
                      f"(the bar check refused it); " + ("the finished bars are kept" if variation.bars else
                                                           "the text so far is kept"),
        "stalled": f"the model stopped writing ({cfg.max_empty_patches} patches without text); the text so far is kept",
        "max_chars": f"the piece grew past {cfg.max_chars} characters, the length limit; the text so far is kept",
        "max_seconds": f"the piece took longer than {cfg.max_seconds:g} s, the time limit; the text so far is kept",
        "max_patches": "the piece reached the patch limit; the text so far is kept",
        "metadata_overflow": "the model wrote a header too long for its context; the raw text is kept below",
        "stopped by the user": "stopped by the user; the text so far is kept",
        "unreduce error": "the model's bars do not fit its header (a voice it did not declare, or no %%score "
                          "line); the raw text is kept below",
        "abc2xml failed": "the score converter could not read the model's text; the raw text is kept below",
        "no notes": "the text holds no notes to make a score of",
        "verovio failed": "the score could not be drawn (the MusicXML, MIDI and audio are there)",
        "music21 failed": "no MIDI file could be made from the score",
        "MIDI export failed": "no MIDI file could be made from the score",
        "audio": "no audio could be made from the MIDI file"}
    plain = []
    for part in parts:
        head = part.split(":", 1)[0].strip()
        if head == "abc2xml failed" and "header" in part:
            plain.append("the model wrote an invalid header line; the raw text is kept below")
        else:
            plain.append(words.get(head, part))
    detail = variation.reason if any(":" in part for part in parts) else ""
    return "; ".join(plain), detail


@dataclass
class Variation:
    index: int
    text: str = ""  # raw text so far: prompt lines, stream prefixes, rest-reduced
    status: str = "waiting"  # waiting, running, finished, failed, stalled, stopped
    reason: str = ""  # why it failed or did not convert
    patches: int = 0
    draft: str = ""  # written after `text`, not yet standing: the line being written
    line_tries: int = 0  # times the line being written was written again
    files: dict = field(default_factory=dict)  # kind -> path (svg: list of pages)
    svg_pages: list[str] = field(default_factory=list)
    score_version: int = 0  # +1 whenever svg_pages change, so the page sends a score only when it is new
    audio_seconds: float | None = None

    def set_score(self, pages: list[str]) -> None:
        self.svg_pages = pages
        self.score_version += 1

    @property
    def bars(self) -> int:
        """Tune-body lines so far (one bar of every voice a line)."""
        return sum(line.startswith(("[r:", "[V:")) for line in self.text.split("\n")[:-1])

    @property
    def shown_text(self) -> str:
        return self.text + self.draft if self.status == "running" else self.text


@dataclass
class Progress:
    run_dir: Path
    seed: int
    variations: list[Variation]
    started: float
    patches: int = 0
    done: bool = False
    stopped: bool = False
    ended: float | None = None  # monotonic time the run ended
    marks: list = field(default_factory=list)  # (monotonic time, patches) at each snapshot, for the rate

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def patches_per_second(self) -> float:
        """Over the last RATE_WINDOW seconds while generating (the whole run once done)."""
        now = time.monotonic()
        recent = [(t, n) for t, n in self.marks if now - t <= RATE_WINDOW]
        if self.done or len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return self.patches / self.seconds if self.seconds > 0 else 0.0
        return (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])

    def mark(self) -> None:
        now = time.monotonic()
        self.marks = [(t, n) for t, n in self.marks if now - t <= RATE_WINDOW] + [(now, self.patches)]


@dataclass
class DemoRequest:
    prompt_lines: tuple[str, ...] = ()  # e.g. ("%Baroque", "%Bach, Johann Sebastian", "%Choral")
    continue_from: Prompt | None = None  # the user's music (notagen.continuation), prompt lines included
    top_k: int = 9
    top_p: float = 0.9
    temperature: float = 1.2
    guidance: float = 1.0  # classifier-free guidance on the prompt's style lines (1 = off)
    seed: int = -1  # -1: a fresh one, shown after the run
    variations: int = 1
    key: str = ""  # controls ("" / None: the model chooses); see notagen/generation/controls.py
    meter: str = ""
    tempo: int | None = None
    bars: int | None = None


class DemoBackend:
    def __init__(self, cfg: SimpleNamespace, log=print):
        self.cfg, self.log = cfg, log
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.weights = resolve_weights(cfg.weights_path)  # "" = the shipped checkpoint
        list_path = cfg.prompt_list or default_prompt_list(self.weights)
        if not list_path:
            raise SetupError(f"no prompts.txt next to {self.weights} and no gradio/prompts.txt: give --prompt_list")
        self.catalog = load_prompt_list(list_path)
        self.model = load_model(self.weights, device=self.device, dtype=self.dtype)
        self.engine = engine_for(self.model)
        self.output_dir = resolve_output_dir(cfg.output_dir)
        self.render_settings = RenderSettings(svg=True, audio=True, audio_format=cfg.audio_format,
                                              synth=cfg.synth, soundfont=cfg.soundfont)
        self.lock = threading.Lock()  # one generation at a time
        self.naming = threading.Lock()  # edit<N> numbers
        c = self.model.config
        log(f"demo model {self.weights}: {c.describe()}, {self.device} {str(self.dtype).replace('torch.', '')}; "
            f"{len(self.catalog)} prompts from {self.catalog.source}")

    # -- one run ---------------------------------------------------------------------------------
    def new_run_dir(self, seed: int) -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        for attempt in range(1000):
            folder = self.output_dir / f"{stamp}_seed{seed}{f'_{attempt}' if attempt else ''}"
            try:
                folder.mkdir(parents=True, exist_ok=False)  # never reuse an earlier run's folder
                return folder
            except FileExistsError:
                continue
        raise SetupError(f"cannot make a new run folder under {self.output_dir}")

    def prompt_for(self, request: DemoRequest) -> Prompt:
        if request.continue_from is not None:
            return request.continue_from
        if not request.prompt_lines:
            raise PromptError("choose a period, composer and instrumentation, or upload music to continue")
        return Prompt.from_lines(request.prompt_lines)

    @staticmethod
    def rewrite_prompt(variation: Variation, prompt_lines, bars: int) -> Prompt:
        """The piece on screen with its first `bars` bars kept (`notagen.continuation`, as an upload):
        what "rewrite from bar N" continues."""
        source = variation.files.get("musicxml") or variation.files.get("abc")
        if not source:
            raise PromptError("this piece has no score to rewrite (its text did not convert); generate a new one")
        if bars < 1:
            raise PromptError("keep at least bar 1: rewrite from a bar of 1 or more")
        continuation = music_to_prompt(source, prompt_lines, bars)
        if bars >= continuation.bars_in_file:
            raise PromptError(f"the piece has {continuation.bars_in_file} bars: keep 1 to "
                              f"{continuation.bars_in_file - 1} of them and rewrite the rest")
        return continuation.prompt

    def generate(self, request: DemoRequest, stop: threading.Event | None = None) -> Iterator[Progress]:
        """Snapshots of the run as it grows; the last one has done=True and every variation's files."""
        cfg, stop = self.cfg, stop or threading.Event()
        if not 1 <= request.variations <= cfg.max_variations:
            raise PromptError(f"variations must be 1 to {cfg.max_variations}")
        prompt = self.prompt_for(request)
        seed = request.seed if request.seed >= 0 else random.SystemRandom().randrange(1 << 31)
        key, meter, tempo = request.key, request.meter, request.tempo
        if prompt.text is not None:  # a continued piece keeps its own header; a chosen meter checks its own M:
            key, tempo = "", None
            meter = meter and next((line[2:].strip() for line in split_header(prompt.text)[0].split("\n")
                                    if line.startswith("M:")), "")
        settings = GenerationSettings(top_k=request.top_k, top_p=request.top_p, temperature=request.temperature,
                                      seed=seed, max_chars=cfg.max_chars, max_seconds=cfg.max_seconds,
                                      max_empty_patches=cfg.max_empty_patches, batch_size=request.variations,
                                      bar_retries=cfg.bar_retries, header_retries=cfg.header_retries,
                                      guidance=request.guidance, stall_seconds=cfg.stall_seconds, key=key,
                                      meter=meter, tempo=tempo, bars=request.bars)
        with self.lock:
            run_dir = self.new_run_dir(seed)
            progress = Progress(run_dir, seed, [Variation(i) for i in range(request.variations)], time.monotonic())
            record = {"weights": str(self.weights), "device": str(self.device),
                      "dtype": str(self.dtype).replace("torch.", ""), "seed": seed,
                      "prompt": prompt.prompt_text, "settings": vars(settings) | {"variations": request.variations}}
            atomic_write_json(run_dir / "settings.json", record)
            yield from self._stream(prompt, settings, progress, stop)
            progress.done, progress.ended = True, time.monotonic()
            record["seconds"] = round(progress.seconds, 3)
            record["variations"] = [{"index": v.index + 1, "status": v.status, "reason": v.reason, "bars": v.bars,
                                     "patches": v.patches, "files": v.files} for v in progress.variations]
            atomic_write_json(run_dir / "settings.json", record)
            yield progress

    def _stream(self, prompt, settings, progress: Progress, stop: threading.Event) -> Iterator[Progress]:
        shown = progress.variations[0]
        last_yield, last_score_bars = 0.0, 0

        def watch(piece) -> None:  # after each patch: the line being written, and its tries
            variation = progress.variations[piece.index]
            variation.draft, variation.line_tries = piece.draft, piece.lines.line_rewrites

        stream = self.engine.stream([prompt] * len(progress.variations), settings, watch=watch)
        try:
            for event in stream:
                variation = progress.variations[event.piece]
                if variation.status == "waiting":
                    variation.status = "running"  # its first event carries the prompt text
                elif event.result is None:
                    variation.patches += 1
                    progress.patches += 1
                variation.text += event.text
                if event.result is not None:
                    self.finish(variation, event.result, progress.run_dir)
                    yield progress
                    continue
                if variation is shown and shown.bars >= last_score_bars + self.cfg.score_every_bars:
                    last_score_bars = shown.bars
                    self.engrave_partial(shown)
                now = time.monotonic()
                if now - last_yield >= self.cfg.stream_interval:
                    last_yield = now
                    progress.mark()
                    yield progress
                if stop.is_set():
                    break
        finally:
            stream.close()  # the engine does no more work once its generator is closed
        for variation in progress.variations:
            if variation.status in ("waiting", "running"):
                variation.status, variation.reason = "stopped", "stopped by the user"
                progress.stopped = True
                path = progress.run_dir / f"variation{variation.index + 1}_raw.abc"
                atomic_write_text(path, variation.text)
                variation.files["raw"] = str(path)

    def engrave_partial(self, variation: Variation) -> None:
        """Score pages of the complete lines so far (kept as they were if they do not convert yet)."""
        complete = variation.text[:variation.text.rfind("\n") + 1]
        try:
            variation.set_score(abc_to_svg_pages(interleaved_text(complete)))
        except Exception:  # noqa: BLE001 - a half-written piece often does not convert yet
            pass

    def finish(self, variation: Variation, result, run_dir: Path) -> None:
        """Files of a finished (or failed) variation; its reason says what did not work."""
        name = f"variation{variation.index + 1}"
        variation.text = result.text
        raw = run_dir / f"{name}_raw.abc"
        atomic_write_text(raw, result.text)
        variation.files, variation.draft = {"raw": str(raw)}, ""
        if not result.ok:
            variation.status, variation.reason = "stalled" if result.reason in STALLED else "failed", result.reason
            if variation.status == "stalled":
                self.render_complete_bars(variation, run_dir, name)
            return
        try:
            interleaved = interleaved_text(result.text)
        except Exception as error:  # noqa: BLE001
            variation.status, variation.reason = "failed", f"unreduce error: {error_reason(error)}"
            return
        self.render(variation, interleaved, run_dir, name)

    def render_complete_bars(self, variation: Variation, run_dir: Path, name: str) -> None:
        """Score, audio and files of a stalled piece's complete bars, when they convert (it stays stalled)."""
        complete = variation.text[:variation.text.rfind("\n") + 1]
        try:
            interleaved = interleaved_text(complete)
        except Exception:  # noqa: BLE001 - no complete bar yet, or bars that do not fit: the raw text stays
            return
        reason = variation.reason
        self.render(variation, interleaved, run_dir, name)
        variation.status, variation.reason = "stalled", "; ".join(filter(None, (reason, variation.reason)))

    def render(self, variation: Variation, abc_text: str, run_dir: Path, name: str) -> Variation:
        """Write `<name>.abc` (the text rendered) and its MusicXML, MIDI, score pages and audio."""
        abc_path = run_dir / f"{name}.abc"
        atomic_write_text(abc_path, abc_text)
        rendered = export_piece(abc_text, lambda kind, suffix: run_dir / f"{name}{suffix}", self.render_settings)
        variation.files.update({"abc": str(abc_path), **rendered.files})
        variation.set_score(rendered.svg_pages)
        variation.audio_seconds = rendered.audio_seconds
        variation.status = "finished" if not rendered.problems else "failed"
        variation.reason = "; ".join(rendered.problems)
        return variation

    def render_edited(self, text: str, run_dir: Path | None) -> Variation:
        """The user's edited or pasted ABC (standard, interleaved or generated) -> files named `edit<N>`."""
        if not text or not text.strip():
            raise PromptError("the ABC text box is empty")
        run_dir = run_dir if run_dir is not None and run_dir.is_dir() else self.new_run_dir(0)
        with self.naming:  # two re-renders at once get two numbers
            number = 1 + len(list(run_dir.glob("edit*.abc")))
            atomic_write_text(run_dir / f"edit{number}.abc", text)
        return self.render(Variation(index=-1, text=text), text, run_dir, f"edit{number}")
