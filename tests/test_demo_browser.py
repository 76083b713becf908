"""The demo page in a real browser: headless Chromium (Debian's package) driven by Playwright
against `python gradio/demo.py` served on 127.0.0.1.

With the tiny vector checkpoint (it rarely finishes a piece that converts): the prompt cascade,
streamed text before the piece ends, the failure reason on the page, a pasted chorale re-rendered
to a score with notes, audio that is real sound as long as its MIDI, working downloads, Stop, an
invalid upload's error toast, a piece that stalls under a meter it cannot keep (ended with its
reason, the queued user's run right after, the previous run's files gone while the next runs),
and no request leaving 127.0.0.1. With the shipped checkpoint: a piece in the key, meter and bars
set on the page, its text changing at least 5 times while it is written, its score and audio, then
"keep bars 1 to 4" writing the rest again. Screenshots go to $DEMO_SCREENSHOT_DIR (default: the
test's tmp folder).
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT, VECTORS, free_port, pipeline_item
from data_support import MUSIC21_CORPUS

TINY_WEIGHTS = VECTORS / "tiny_notagen.pth"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BACH = pipeline_item("bach/bwv269.mxl")
BROWSER_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def browser_or_reason() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-test.txt)"
    if not Path(CHROMIUM).is_file():
        return "no chromium (apt-get install chromium)"
    return None


MISSING = browser_or_reason()
if MISSING and os.environ.get("CI"):
    raise RuntimeError(f"the browser test must run in CI: {MISSING} (.ci/run installs both)")
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


class DemoServer:
    def __init__(self, out_dir: Path, *args: str):
        self.out_dir = out_dir
        self.log_path = out_dir / "server.log"
        out_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(REPO_ROOT / "gradio" / "demo.py"), "--port", str(free_port()),
                   "--output_dir", str(out_dir / "runs"), "--device", "cpu", "--num_threads", "1", *args]
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            found = re.search(r"demo on (http://127\.0\.0\.1:\d+/?)", self.log_path.read_text())
            if found:
                self.url = found.group(1)
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        raise AssertionError(f"the demo did not start:\n{self.log_path.read_text()[-3000:]}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    folder = Path(os.environ.get("DEMO_SCREENSHOT_DIR", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_page(browser, server: DemoServer):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.requests = []
    page.on("request", lambda request: page.requests.append(request.url))
    page.goto(server.url)
    page.wait_for_selector("#period input", timeout=60_000)
    return page


def options_of(page, elem_id: str):
    """Open a dropdown; the locator of its own options."""
    field = page.locator(f"#{elem_id} input")
    field.click()
    listbox = page.locator(f"[id='{field.get_attribute('aria-controls')}']")
    listbox.locator("[role=option]").first.wait_for()
    return listbox.locator("[role=option]")


def choose(page, elem_id: str, option: str) -> None:
    options = options_of(page, elem_id)
    options.and_(page.locator(f"[aria-label={option!r}]")).first.click()
    page.wait_for_function("([id, value]) => document.querySelector(`#${id} input`).value === value",
                           arg=[elem_id, option], timeout=30_000)


def offered(page, elem_id: str) -> list[str]:
    options = options_of(page, elem_id)
    options = [options.nth(i).get_attribute("aria-label") for i in range(options.count())]
    page.locator("#status").click()  # focus elsewhere closes the list
    page.wait_for_selector("[role=option]", state="detached")
    return options


def status(page) -> str:
    return page.locator("#status").inner_text()


def wait_status(page, pattern: str, seconds: float = 300) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = status(page)
        if re.search(pattern, text):
            return text
        page.wait_for_timeout(200)
    raise AssertionError(f"status never matched {pattern!r}: {status(page)!r}")


def sample_stream(page) -> None:
    """The page itself samples every 5 ms, while it says it is generating, the longest text it shows
    and how many different texts it has shown: a test polling from Python (a round trip per look)
    can miss a tiny model's whole piece."""
    page.evaluate("""() => {
        window.streamedChars = 0; window.streamedTexts = new Set();
        window.streamSampler = setInterval(() => {
            const state = document.querySelector('#status')?.innerText || '';
            const text = document.querySelector('#abc-text textarea')?.value || '';
            if (state.startsWith('generating')) {
                window.streamedChars = Math.max(window.streamedChars, text.length);
                window.streamedTexts.add(text);
            }
        }, 5);
    }""")


def streamed(page) -> tuple[int, int]:
    """(most chars shown, different texts shown) while generating, since `sample_stream`."""
    return page.evaluate("() => { clearInterval(window.streamSampler); "
                         "return [window.streamedChars, window.streamedTexts.size]; }")


def set_field(page, elem_id: str, value: str) -> None:
    field = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    field.fill(value)
    field.press("Tab")


def fetch(page, url: str) -> bytes:
    response = page.request.get(url)
    assert response.ok, f"{url}: HTTP {response.status}"
    return response.body()


def check_audio(page, midi_bytes: bytes) -> float:
    """The page's audio element holds real sound about as long as the MIDI file."""
    import base64

    import pretty_midi
    import soundfile

    player = page.locator("#audio audio[src]").first  # the waveform player's element (shadow DOM)
    player.wait_for(state="attached", timeout=60_000)
    player.evaluate("a => new Promise(done => a.readyState > 0 ? done() : a.addEventListener('loadedmetadata', done))")
    browser_seconds = player.evaluate("a => a.duration")
    encoded = player.evaluate("""async a => { const bytes = new Uint8Array(await (await fetch(a.src)).arrayBuffer());
        let text = ''; for (const b of bytes) text += String.fromCharCode(b); return btoa(text); }""")
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(encoded)), always_2d=True)
    seconds = len(samples) / rate
    midi_seconds = pretty_midi.PrettyMIDI(io.BytesIO(midi_bytes)).get_end_time()
    assert float(np.sqrt(np.mean(samples ** 2))) > 0.01, "the audio is silent"
    assert midi_seconds - 0.1 <= seconds <= midi_seconds + 2.0, (seconds, midi_seconds)
    assert abs(browser_seconds - seconds) < 0.5, (browser_seconds, seconds)  # the browser plays all of it
    return seconds


def download_links(page) -> dict[str, str]:
    """File name -> address of every link in the Downloads box."""
    links = page.locator("#downloads a.download-link")
    return {links.nth(i).get_attribute("download"): links.nth(i).get_attribute("href") for i in range(links.count())}


def only_local(page) -> None:
    outside = [url for url in page.requests if not url.startswith(("http://127.0.0.1", "data:", "blob:"))]
    assert not outside, f"the page reached outside 127.0.0.1: {outside[:5]}"


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory):
    server = DemoServer(tmp_path_factory.mktemp("demo_tiny"), "--weights_path", str(TINY_WEIGHTS),
                        "--max_chars", "4000", "--synth", "midirenderer")
    yield server
    server.stop()


def test_tiny_checkpoint_streams_shows_its_failure_and_renders_a_pasted_chorale(browser, tiny_server, screenshots):
    from notagen.prompts import PromptCatalog

    catalog = PromptCatalog.from_file(REPO_ROOT / "gradio" / "prompts.txt")
    page = open_page(browser, tiny_server)
    # the cascade only offers what the prompts file holds
    assert offered(page, "period") == catalog.periods()
    choose(page, "period", "Romantic")
    page.wait_for_function("value => document.querySelector('#composer input').value === value",
                           arg=catalog.composers("Romantic")[0], timeout=30_000)
    assert offered(page, "composer") == catalog.composers("Romantic")
    choose(page, "composer", "Chopin, Frederic")
    assert offered(page, "instrumentation") == catalog.instrumentations("Romantic", "Chopin, Frederic")
    choose(page, "instrumentation", "Keyboard")
    strength = page.locator("#guidance input[type=number]")
    strength.fill("1.5")
    strength.press("Enter")

    sample_stream(page)
    page.locator("#generate").click()
    wait_status(page, "^done")
    chars, texts = streamed(page)
    assert chars > 60, "no text arrived before the piece ended"
    assert texts >= 5, f"the ABC text changed {texts} times while the piece was written"
    final = status(page)
    assert re.search(r"variation 1: ((failed|stalled), \d+ bars — \S+|finished)", final), final
    assert page.locator("#abc-text textarea").input_value().startswith("%Romantic\n%Chopin, Frederic\n%Keyboard\n")
    record = max((tiny_server.out_dir / "runs").glob("*/settings.json"), key=lambda path: path.stat().st_mtime)
    assert json.loads(record.read_text())["settings"]["guidance"] == 1.5  # the prompt-strength slider's value
    if "failed" in final:  # the reason is on the page, and so is the raw text to download
        assert "No score:" in page.locator("#score").inner_text()
        assert any(name.endswith("_raw.abc") for name in download_links(page))
    page.screenshot(path=str(screenshots / "demo_tiny_failed.png"), full_page=True)

    # paste a real chorale and re-render: score with notes, real audio, downloads
    page.locator("#abc-text textarea").fill(BACH["interleaved"])
    page.locator("#rerender").click()
    wait_status(page, r"re-rendered", 120)
    page.wait_for_selector("#score .score-page svg", timeout=60_000)
    assert page.locator("#score g.note").count() > 100
    links = download_links(page)
    assert {Path(name).suffix for name in links} >= {".abc", ".musicxml", ".mid", ".mp3"}, links
    contents = {name: fetch(page, href) for name, href in links.items()}
    assert contents[next(n for n in links if n.endswith(".abc"))].decode() == BACH["interleaved"]
    assert contents[next(n for n in links if n.endswith(".musicxml"))].lstrip().startswith(b"<?xml")
    midi = contents[next(n for n in links if n.endswith(".mid"))]
    assert midi[:4] == b"MThd"
    check_audio(page, midi)
    page.screenshot(path=str(screenshots / "demo_pasted_chorale.png"), full_page=True)
    only_local(page)
    page.close()


def test_prompt_choices_are_answered_in_the_page_and_the_last_one_wins(browser, tiny_server):
    """A choice fires two input events (the click and the list closing). Answered by the server,
    both ran at once and a stale answer could come back after the next choice's (CI saw the
    Classical composers stay after Romantic was chosen). The page answers them itself."""
    from notagen.prompts import PromptCatalog

    catalog = PromptCatalog.from_file(REPO_ROOT / "gradio" / "prompts.txt")
    page = open_page(browser, tiny_server)
    sent = len(page.requests)
    for period in ("Classical", "Romantic", "Baroque", "Romantic"):
        choose(page, "period", period)
    page.wait_for_function("value => document.querySelector('#composer input').value === value",
                           arg=catalog.composers("Romantic")[0], timeout=30_000)
    assert offered(page, "composer") == catalog.composers("Romantic")
    composer = catalog.composers("Romantic")[-1]
    choose(page, "composer", composer)
    page.wait_for_function("value => document.querySelector('#instrumentation input').value === value",
                           arg=catalog.instrumentations("Romantic", composer)[0], timeout=30_000)
    assert offered(page, "instrumentation") == catalog.instrumentations("Romantic", composer)
    assert not [url for url in page.requests[sent:] if "/gradio_api/" in url], page.requests[sent:]
    # the random prompt (answered by the server) is one the catalog holds, and the page goes on from it
    with page.expect_response("**/gradio_api/run/predict"):
        page.locator("#random-prompt").click()
    shown = "() => ['period', 'composer', 'instrumentation'].map(id => document.querySelector(`#${id} input`).value)"
    page.wait_for_function(f"known => known.includes(({shown})().join('|'))",
                           arg=["|".join(t) for t in catalog.triples], timeout=30_000)
    choose(page, "period", "Baroque")
    page.wait_for_function("value => document.querySelector('#composer input').value === value",
                           arg=catalog.composers("Baroque")[0], timeout=30_000)
    assert offered(page, "composer") == catalog.composers("Baroque")
    choose(page, "period", "Romantic")
    # the lists are the page's, so the server checks the prompt itself: a typed-in name is refused
    page.locator("#composer input").fill("Nobody, Anyone")
    page.locator("#status").click()
    page.locator("#generate").click()
    page.get_by_text("'Romantic|Nobody, Anyone|").first.wait_for(timeout=30_000)
    assert "composers of the Romantic period" in page.inner_text("body")
    assert status(page).endswith("Ready."), status(page)  # nothing was generated
    page.close()


def test_stop_halts_a_running_generation(browser, tiny_server):
    page = open_page(browser, tiny_server)
    page.locator("#generate").click()
    page.wait_for_function("() => document.querySelector('#abc-text textarea').value.length > 40", timeout=60_000)
    assert status(page).startswith("generating")
    page.locator("#stop").click()
    final = wait_status(page, r"^(stopped|done)", 60)
    assert final.startswith("stopped") and "stopped by the user" in final, final
    run_dir = max((tiny_server.out_dir / "runs").iterdir(), key=lambda path: path.stat().st_mtime)
    assert (run_dir / "variation1_raw.abc").is_file() and (run_dir / "settings.json").is_file()
    text = (run_dir / "variation1_raw.abc").read_text()
    time.sleep(1.5)  # nothing grows after Stop
    assert (run_dir / "variation1_raw.abc").read_text() == text
    only_local(page)
    page.close()


def test_invalid_upload_shows_an_error_and_the_server_keeps_serving(browser, tiny_server, tmp_path):
    junk = tmp_path / "broken.mid"
    junk.write_bytes(b"this is not a MIDI file")
    page = open_page(browser, tiny_server)
    page.get_by_text("Continue your music").click()
    page.locator("#upload input[type=file]").set_input_files(str(junk))
    page.get_by_text("cannot continue broken.mid").first.wait_for(timeout=60_000)
    assert tiny_server.alive()
    page.close()
    page = open_page(browser, tiny_server)  # a fresh page is served, and a good file is taken
    page.get_by_text("Continue your music").click()
    page.locator("#upload input[type=file]").set_input_files(str(MUSIC21_CORPUS / "bach" / "bwv269.mxl"))
    page.get_by_text("Continuing bwv269.mxl").first.wait_for(timeout=60_000)
    assert "writes on from bar 9" in page.locator("#upload-note").inner_text()
    page.close()


def test_a_stalled_piece_ends_with_its_reason_and_the_queued_run_starts(browser, tmp_path, screenshots):
    """A meter the tiny model cannot keep, no limit on rewrites and a 1 s stall limit: the piece
    ends as stalled with its reason; a second user's Generate waits in the queue and runs right
    after; a new run first clears the previous run's downloads, audio, score and messages."""
    server = DemoServer(tmp_path / "demo_stall", "--weights_path", str(TINY_WEIGHTS), "--stall_seconds", "1",
                        "--bar_retries", "1000", "--max_chars", "4000", "--synth", "midirenderer")
    try:
        first, second = open_page(browser, server), open_page(browser, server)
        set_field(first, "meter", "7/8")
        set_field(first, "bars", "8")
        first.locator("#seed input").fill("1")
        first.locator("#generate").click()
        wait_status(first, "^generating", 60)
        second.locator("#generate").click()  # the one generation slot is taken: this one waits
        assert status(second).endswith("Ready.")
        final = wait_status(first, "^done", 60)
        assert re.search(r"variation 1: stalled, \d+ bars — no new bar for 1 s: the model kept rewriting bar \d+", final), final
        assert "M:7/8" in first.locator("#abc-text textarea").input_value()  # the text is kept
        assert any(name.endswith("_raw.abc") for name in download_links(first))
        first.screenshot(path=str(screenshots / "demo_stalled.png"), full_page=True)
        wait_status(second, "^(generating|done)", 30)  # the queued run starts once the stalled one has ended
        wait_status(second, "^done", 120)
        # a new run starts from a clean page: nothing of the last run's files or messages
        first.locator("#generate").click()
        wait_status(first, "^(starting|generating)", 60)
        assert not download_links(first) and first.locator("#audio audio[src]").count() == 0
        assert "stalled" not in status(first) and first.locator("#score .score-page").count() == 0
        wait_status(first, "^done", 60)
        only_local(first)
    finally:
        server.stop()


def test_shipped_checkpoint_writes_the_chosen_key_meter_and_bars_then_rewrites_the_rest(browser, tmp_path,
                                                                                        screenshots):
    import music21

    from notagen.paths import default_weights

    weights = default_weights()
    assert weights.is_relative_to(REPO_ROOT / "weights"), f"no shipped checkpoint: {weights}"
    server = DemoServer(tmp_path / "demo_shipped")  # no weights argument: the default checkpoint
    try:
        page = open_page(browser, server)
        for elem_id, value in (("key", "Dm"), ("meter", "3/4"), ("bars", "8")):
            set_field(page, elem_id, value)
        page.locator("#seed input").fill("0")
        sample_stream(page)
        page.locator("#generate").click()
        final = wait_status(page, r"^(done|stopped)", 600)
        chars, texts = streamed(page)
        assert "variation 1: finished" in final, final
        assert texts >= 5, f"the ABC text changed {texts} times while the piece was written"
        page.wait_for_selector("#score .score-page svg", timeout=60_000)
        assert page.locator("#score g.note").count() > 20
        assert page.locator("#score g.keySig").count() > 0 and page.locator("#score g.meterSig").count() > 0
        links = download_links(page)
        musicxml = fetch(page, next(href for name, href in links.items() if name.endswith(".musicxml")))
        score = music21.converter.parse(musicxml, format="musicxml")
        assert {str(k) for k in score.recurse().getElementsByClass(music21.key.Key)} == {"d minor"}
        assert {t.ratioString for t in score.recurse().getElementsByClass(music21.meter.TimeSignature)} == {"3/4"}
        measures = {len(part.getElementsByClass(music21.stream.Measure)) for part in score.parts}
        assert measures <= {8, 9}, measures  # 9 with a pickup
        midi = fetch(page, next(href for name, href in links.items() if name.endswith(".mid")))
        check_audio(page, midi)
        page.screenshot(path=str(screenshots / "demo_shipped.png"), full_page=True)

        # keep bars 1 to 4, write the rest again with a new seed
        set_field(page, "keep-bars", "4")
        page.locator("#rewrite").click()
        wait_status(page, "^(starting|generating)", 60)
        assert not download_links(page)  # the piece before is not offered for download during the rewrite
        final = wait_status(page, r"^(done|stopped)", 600)
        assert "variation 1: finished" in final, final
        rewritten = music21.converter.parse(fetch(page, next(href for name, href in download_links(page).items()
                                                             if name.endswith(".musicxml"))), format="musicxml")
        pitches = lambda s: [[n.pitches for n in m.notes] for m in s.parts[0].getElementsByClass(music21.stream.Measure)]  # noqa: E731
        assert pitches(rewritten)[:4] == pitches(score)[:4] and pitches(rewritten) != pitches(score)
        page.screenshot(path=str(screenshots / "demo_rewritten.png"), full_page=True)
        only_local(page)
        page.close()
    finally:
        server.stop()
