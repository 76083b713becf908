"""The demo page (Gradio): pick a prompt (and, if you like, key, meter, tempo and bars) or upload
music, watch the piece stream in, see its score, hear it, download it, rewrite it from a bar on.
All work is `DemoBackend`'s; this file only wires components to it.

Design choices
- Offline by construction: analytics and version checks off (set before gradio is imported),
  no `share`, no server-side rendering process, a theme with system fonts (the default theme
  loads web fonts from outside), bound to 127.0.0.1 unless `--host` says otherwise.
- One generation at a time (queue concurrency 1, bounded queue); Stop bypasses the queue and sets
  the session's stop event, which ends the engine's stream at its next patch.
- Bad input (an unknown triple, an impossible key or meter, an upload that does not convert)
  raises `gr.Error` before anything runs: a toast on the page, the server goes on.
- A new run first clears the previous one's score, audio, downloads and messages, so no file of
  another piece can be taken for this one. Reasons are in plain words (`plain_reason`), the
  converter's own words behind a disclosure.
- "Keep bars 1 to N" rewrites the rest of the piece on screen with a new seed: its MusicXML goes
  through `notagen.continuation`, as an upload does, and runs in the one generation slot.
"""
from __future__ import annotations

import html
import json
import os
import threading
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import gradio as gr  # noqa: E402

from ..continuation import music_to_prompt  # noqa: E402
from ..generation.controls import normal_controls  # noqa: E402
from ..generation.prompt import PromptError  # noqa: E402
from ..settings import apply_num_threads  # noqa: E402
from .session import DemoBackend, DemoRequest, Progress, Variation, plain_reason  # noqa: E402

CSS = """
.score-page svg { width: 100%; height: auto; background: white; }
.score-page { margin-bottom: 1em; }
#status { min-height: 3em; }
"""
UPLOAD_TYPES = [".abc", ".xml", ".musicxml", ".mxl", ".mid", ".midi"]
STATUS_MARK = {"finished": "finished", "failed": "failed", "stalled": "stalled", "stopped": "stopped",
               "running": "writing", "waiting": "waiting"}


def score_html(pages: list[str], note: str = "") -> str:
    if not pages:
        return f"<p class='score-empty'>{html.escape(note)}</p>" if note else ""
    return "".join(f"<div class='score-page' data-page='{n}'>{page}</div>" for n, page in enumerate(pages, 1))


def details(summary: str, text: str) -> str:
    return f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(text)}</pre></details>"


def status_markdown(progress: Progress, cfg) -> str:
    """The run's state line (patches/s of the last seconds), then one line a variation: the bar it is
    writing and how often it was written again, or how it ended in plain words."""
    state = "stopped" if progress.stopped else "done" if progress.done else "generating"
    lines = [f"**{state}** · seed {progress.seed} · {progress.seconds:.1f} s · "
             f"{progress.patches_per_second:.1f} patches/s · folder `{progress.run_dir.name}`"]
    hidden = []
    for v in progress.variations:
        words, detail = plain_reason(v, cfg)
        if v.status == "running":
            tries = f", written again {v.line_tries} times" if v.line_tries else ""
            lines.append(f"- variation {v.index + 1}: {STATUS_MARK[v.status]} bar {v.bars + 1}{tries}, {v.bars} bars")
        else:
            lines.append(f"- variation {v.index + 1}: {STATUS_MARK[v.status]}, {v.bars} bars" + (f" — {words}" if words else ""))
        if detail:
            hidden.append(details(f"variation {v.index + 1}: what the converter said", detail))
    return "\n".join(lines) + ("\n\n" + "\n".join(hidden) if hidden else "")


def downloads(variation: Variation, run_dir: Path | None) -> list[str]:
    files = [variation.files[k] for k in ("abc", "musicxml", "midi", "audio", "raw") if k in variation.files]
    if run_dir is not None and (run_dir / "settings.json").is_file():
        files.append(str(run_dir / "settings.json"))
    return files


class DemoPage:
    """The handlers of the page's events (each one short, testable without a browser) and the layout."""

    def __init__(self, backend: DemoBackend):
        self.backend, self.cfg, self.catalog = backend, backend.cfg, backend.catalog
        self.stops: dict[str, threading.Event] = {}  # session -> the Stop of its running generation

    # -- prompt ------------------------------------------------------------------------------------
    def prompt_lines(self, period, composer, instrumentation) -> tuple[str, ...]:
        try:
            triple = self.catalog.check(period, composer, instrumentation)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        return tuple(f"%{field}" for field in triple)

    def cascade_js(self) -> tuple[str, str]:
        """The browser-side answers to a period and a composer choice: (period) -> composer and
        instrumentation updates, (period, composer) -> instrumentation update. In the page, not on
        the server, because a choice fires two input events (the click and the list closing) and
        Gradio runs both; their answers can come back after the next choice's, and a stale list won."""
        tree = [[p, [[c, self.catalog.instrumentations(p, c)] for c in self.catalog.composers(p)]]
                for p in self.catalog.periods()]
        common = (f"const tree = {json.dumps(tree)};"  # [[period, [[composer, [instrumentation]]]]]
                  " const below = (list, key) => (list.find(([name]) => name === key) || [key, []])[1];"
                  # a Dropdown's choices are (label, value) pairs
                  " const update = names => ({__type__: 'update', choices: names.map(n => [n, n]),"
                  " value: names.length ? names[0] : null});")
        on_period = (f"(period) => {{ {common} const composers = below(tree, period);"
                     " return [update(composers.map(([name]) => name)),"
                     " update(composers.length ? composers[0][1] : [])]; }")
        on_composer = f"(period, composer) => {{ {common} return update(below(below(tree, period), composer)); }}"
        return on_period, on_composer

    def on_random(self):
        period, composer, instrumentation = self.catalog.random()
        return (gr.update(value=period), gr.update(choices=self.catalog.composers(period), value=composer),
                gr.update(choices=self.catalog.instrumentations(period, composer), value=instrumentation))

    # -- music to continue -------------------------------------------------------------------------
    @staticmethod
    def continuation(path, lines, bars):
        try:
            return music_to_prompt(path, lines, int(bars or 0))
        except (PromptError, ValueError) as error:
            raise gr.Error(f"cannot continue {Path(path).name}: {error}") from None

    def on_upload(self, path, bars):
        if not path:
            return None, "No music uploaded: the model starts a new piece."
        continuation = self.continuation(path, (), bars)
        return (str(path), f"Continuing **{Path(path).name}**: the model writes on from bar "
                           f"{continuation.bars_given + 1} ({continuation.bars_given} of its "
                           f"{continuation.bars_in_file} bars given).")

    # -- generation --------------------------------------------------------------------------------
    @staticmethod
    def job(lines, prompt, controls, top_k, top_p, temperature, guidance, seed, variations) -> DemoRequest:
        """The request of the page's fields; impossible controls are an error toast before anything runs."""
        key, meter, tempo, length = controls
        try:
            key, meter, tempo, length = normal_controls(key, meter, tempo, length)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        return DemoRequest(prompt_lines=lines, continue_from=prompt, top_k=int(top_k), top_p=float(top_p),
                           temperature=float(temperature), guidance=float(guidance), seed=int(seed),
                           variations=int(variations), key=key, meter=meter, tempo=tempo, bars=length)

    def run(self, period, composer, instrumentation, key, meter, tempo, length, upload, bars, top_k, top_p,
            temperature, guidance, seed, variations, request: gr.Request):
        lines = self.prompt_lines(period, composer, instrumentation)
        continuation = self.continuation(upload, lines, bars).prompt if upload else None
        job = self.job(lines, continuation, (key, meter, tempo, length), top_k, top_p, temperature, guidance, seed,
                       variations)
        yield from self.generation(job, request)

    def rewrite(self, keep, choice, progress, period, composer, instrumentation, key, meter, tempo, length, top_k,
                top_p, temperature, guidance, variations, request: gr.Request):
        """Keep bars 1 to N of the variation on screen and write the rest again, with a new seed."""
        if progress is None or not progress.done:
            raise gr.Error("generate a piece first: the rewrite keeps bars of the piece on screen")
        lines = self.prompt_lines(period, composer, instrumentation)
        try:
            prompt = self.backend.rewrite_prompt(progress.variations[int(choice or 1) - 1], lines, int(keep or 0))
        except ValueError as error:
            raise gr.Error(f"cannot rewrite: {error}") from None
        job = self.job(lines, prompt, (key, meter, tempo, length), top_k, top_p, temperature, guidance, -1, variations)
        yield from self.generation(job, request)

    def generation(self, job: DemoRequest, request: gr.Request):
        """Clear the previous run's score, audio, downloads and messages, then stream the new run."""
        stop = self.stops[request.session_hash] = threading.Event()
        yield ("**starting** …", "", "", None, None, gr.update(), gr.update(), gr.update(choices=["1"], value="1"))
        sent_score = 0
        try:
            for progress in self.backend.generate(job, stop):
                shown = progress.variations[0]
                score = score_html(shown.svg_pages) if shown.score_version != sent_score else gr.update()
                sent_score = shown.score_version
                yield (status_markdown(progress, self.cfg), shown.shown_text, score,
                       gr.update(), gr.update(), progress, progress.seed,
                       gr.update(choices=[str(i + 1) for i in range(len(progress.variations))], value="1"))
        except ValueError as error:  # a prompt, setting or control that cannot work
            yield (f"**not started**: {html.escape(str(error))}", *(gr.update(),) * 7)
            raise gr.Error(str(error)) from None
        yield self.show_variation("1", progress)[:-1] + (progress, progress.seed, gr.update())

    def show_variation(self, choice, progress):
        if progress is None:
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
        variation = progress.variations[int(choice or 1) - 1]
        note = f"No score: {plain_reason(variation, self.cfg)[0]}" if variation.reason else ""
        return (status_markdown(progress, self.cfg), variation.shown_text, score_html(variation.svg_pages, note),
                variation.files.get("audio"), downloads(variation, progress.run_dir), gr.update())

    def rerender(self, text, progress):
        run_dir = progress.run_dir if progress is not None else None
        try:
            edited = self.backend.render_edited(text, run_dir)
        except PromptError as error:
            raise gr.Error(str(error)) from None
        folder = Path(edited.files["abc"]).parent
        words, detail = plain_reason(edited, self.cfg)
        state = (f"**re-rendered** the text in the box → `{folder.name}/{Path(edited.files['abc']).name}`"
                 + (f" — {words}" if words else "") + ("\n\n" + details("what the converter said", detail) if detail else ""))
        note = f"No score: {words}" if edited.reason else ""
        return state, score_html(edited.svg_pages, note), edited.files.get("audio"), downloads(edited, folder)

    def on_stop(self, request: gr.Request):
        event = self.stops.get(request.session_hash)
        if event is not None:
            event.set()

    # -- layout and wiring -------------------------------------------------------------------------
    def controls(self) -> SimpleNamespace:
        """The left column: prompt, buttons, music to continue, sampling."""
        cfg, catalog, first = self.cfg, self.catalog, self.catalog.triples[0]
        c = SimpleNamespace()
        c.period = gr.Dropdown(catalog.periods(), value=first[0], label="Period", elem_id="period")
        # their lists change in the page (cascade_js), which the server's copy does not see; the
        # server checks the whole prompt against the catalog instead
        c.composer = gr.Dropdown(catalog.composers(first[0]), value=first[1], label="Composer", elem_id="composer",
                                 allow_custom_value=True)
        c.instrumentation = gr.Dropdown(catalog.instrumentations(*first[:2]), value=first[2],
                                        label="Instrumentation", elem_id="instrumentation", allow_custom_value=True)
        c.random_button = gr.Button("Random valid prompt", elem_id="random-prompt")
        with gr.Row():  # optional: empty fields leave them to the model
            c.key = gr.Textbox(cfg.key, label="Key", placeholder="Dm", elem_id="key", min_width=90)
            c.meter = gr.Textbox(cfg.meter, label="Meter", placeholder="3/4", elem_id="meter", min_width=90)
            # text, not number fields: an empty number field sends 0, which is no tempo and no length
            c.tempo = gr.Textbox("" if cfg.tempo is None else str(cfg.tempo), label="Tempo",
                                 placeholder="♩ = 96", elem_id="tempo", min_width=90)
            c.length = gr.Textbox("" if cfg.bars is None else str(cfg.bars), label="Bars", placeholder="16",
                                  elem_id="bars", min_width=90)
        with gr.Row():
            c.generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
            c.stop_button = gr.Button("Stop", variant="stop", elem_id="stop")
        with gr.Accordion("Continue your music (ABC, MusicXML or MIDI)", open=False):
            c.upload = gr.File(label="Music file", file_types=UPLOAD_TYPES, type="filepath", elem_id="upload")
            c.bars = gr.Number(cfg.continue_bars, label="Bars to continue from (0 = all)", precision=0, minimum=0)
            c.upload_note = gr.Markdown("No music uploaded: the model starts a new piece.", elem_id="upload-note")
        with gr.Accordion("Sampling", open=True):
            c.top_k = gr.Slider(1, 128, value=cfg.top_k, step=1, label="top-k")
            c.top_p = gr.Slider(0.05, 1.0, value=cfg.top_p, step=0.05, label="top-p")
            c.temperature = gr.Slider(0.1, 2.0, value=cfg.temperature, step=0.05, label="temperature")
            c.guidance = gr.Slider(0.0, 3.0, value=cfg.guidance, step=0.1, elem_id="guidance",
                                   label="prompt strength (1 = off; more follows the prompt more)")
            c.seed = gr.Number(-1, label="seed (-1 = new)", precision=0, elem_id="seed")
            c.last_seed = gr.Number(None, label="seed of the last run", precision=0, interactive=False,
                                    elem_id="last-seed")
            c.reuse_seed = gr.Button("Reuse that seed", size="sm")
            c.variations = gr.Slider(1, cfg.max_variations, value=1, step=1, label="variations")
        return c

    def results(self) -> SimpleNamespace:
        """The right column: status, variation choice, text, rewrite, score, audio, downloads."""
        cfg, r = self.cfg, SimpleNamespace()
        r.status = gr.Markdown("Ready.", elem_id="status")
        r.choice = gr.Radio(["1"], value="1", label="Variation", elem_id="variation")
        r.abc = gr.Textbox(label="ABC (editable: change it and press Re-render)", lines=12, max_lines=24,
                           interactive=True, elem_id="abc-text")
        r.rerender_button = gr.Button("Re-render score and audio from the text", elem_id="rerender")
        with gr.Row(equal_height=True):
            r.keep = gr.Number(cfg.continue_bars, label="Keep bars 1 to N", precision=0, minimum=1, elem_id="keep-bars",
                               scale=1, min_width=120)
            r.rewrite_button = gr.Button("Rewrite the rest (new seed)", elem_id="rewrite", scale=2)
        r.score = gr.HTML(elem_id="score")
        r.audio = gr.Audio(label="Listen", type="filepath", interactive=False, elem_id="audio", buttons=["download"])
        r.files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
        return r

    def wire(self, c: SimpleNamespace, r: SimpleNamespace, last_run) -> None:
        prompt = [c.period, c.composer, c.instrumentation]
        on_period, on_composer = self.cascade_js()
        # user choices only, answered in the page: no request, so no answer can arrive out of order
        c.period.input(None, c.period, [c.composer, c.instrumentation], js=on_period, queue=False)
        c.composer.input(None, [c.period, c.composer], c.instrumentation, js=on_composer, queue=False)
        c.random_button.click(self.on_random, None, prompt, queue=False)
        # queued (errors become toasts), beside the generation slot rather than behind it
        c.upload.change(self.on_upload, [c.upload, c.bars], [c.upload, c.upload_note], concurrency_limit=4,
                        concurrency_id="upload")
        c.reuse_seed.click(lambda value: value if value is not None else -1, c.last_seed, c.seed, queue=False)
        controls, sampling = [c.key, c.meter, c.tempo, c.length], [c.top_k, c.top_p, c.temperature, c.guidance]
        shown = [r.status, r.abc, r.score, r.audio, r.files, last_run, c.last_seed, r.choice]
        c.generate_button.click(self.run, [*prompt, *controls, c.upload, c.bars, *sampling, c.seed, c.variations], shown,
                                concurrency_limit=1, concurrency_id="generation", show_progress="minimal")
        r.rewrite_button.click(self.rewrite, [r.keep, r.choice, last_run, *prompt, *controls, *sampling, c.variations],
                               shown, concurrency_limit=1, concurrency_id="generation", show_progress="minimal")
        c.stop_button.click(self.on_stop, None, None, queue=False)
        r.choice.input(self.show_variation, [r.choice, last_run], [r.status, r.abc, r.score, r.audio, r.files, r.choice],
                       queue=False, trigger_mode="always_last")
        r.rerender_button.click(self.rerender, [r.abc, last_run], [r.status, r.score, r.audio, r.files],
                                concurrency_limit=2, concurrency_id="render")

    def blocks(self):
        with gr.Blocks(title="NotaGen demo", analytics_enabled=False) as page:
            last_run = gr.State(None)
            gr.Markdown(f"# NotaGen\nSymbolic music from `{self.backend.weights.name}` "
                        f"({self.backend.device}). Choose a style, or upload a piece to continue.")
            with gr.Row():
                with gr.Column(scale=1, min_width=300):
                    controls = self.controls()
                with gr.Column(scale=2):
                    results = self.results()
            self.wire(controls, results, last_run)
        return page


def build_page(backend: DemoBackend):
    """The gr.Blocks of the demo."""
    return DemoPage(backend).blocks()


def offline_theme():
    """Gradio's default look with system fonts: the stock theme fetches web fonts from outside."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "SFMono-Regular", "monospace"])


def launch(cfg: SimpleNamespace, block: bool = True):
    """Load the model, build the page and serve it; returns the gradio App when `block` is False."""
    apply_num_threads(cfg)
    backend = DemoBackend(cfg)
    page = build_page(backend)
    page.queue(max_size=cfg.max_queue, default_concurrency_limit=1, api_open=False)
    page.launch(server_name=cfg.host, server_port=cfg.port or None, share=False, inbrowser=False,
                prevent_thread_lock=True, show_error=True, quiet=True, ssr_mode=False, footer_links=[],
                allowed_paths=[str(backend.output_dir)], mcp_server=False, pwa=False, theme=offline_theme(),
                css=CSS)
    print(f"demo on {page.local_url} (Ctrl+C stops it); runs are kept under {backend.output_dir}", flush=True)
    if block:
        try:
            page.block_thread()
        except KeyboardInterrupt:
            pass
    return page
