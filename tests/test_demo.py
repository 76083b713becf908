"""The demo's parts without a browser: prompt cascade and triple check, score pages from a worker
thread, audio as long as its MIDI, per-run folders that never overwrite each other, Stop, the
re-render of pasted text, continuation files, and inference.py --render."""
from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from notagen.generation.run import SetupError
from notagen.prompts import PromptCatalog, PromptCatalogError
from notagen.settings import parse_settings
from conftest import REPO_ROOT, VECTORS, load_vector, pipeline_item
from data_support import MUSIC21_CORPUS

TINY_WEIGHTS = VECTORS / "tiny_notagen.pth"
BACH = pipeline_item("bach/bwv269.mxl")
CHORALE = MUSIC21_CORPUS / "bach" / "bwv269.mxl"


# -- prompts -----------------------------------------------------------------------------------
def test_prompt_cascade_from_a_prompts_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("Baroque_Bach, Johann Sebastian_Keyboard\nBaroque_Bach, Johann Sebastian_Choral\n"
                    "Baroque_Handel, George Frideric_Orchestral\nRomantic_Chopin, Frederic_Keyboard\n\n")
    catalog = PromptCatalog.from_file(path)
    assert catalog.periods() == ["Baroque", "Romantic"]
    assert catalog.composers("Baroque") == ["Bach, Johann Sebastian", "Handel, George Frideric"]
    assert catalog.instrumentations("Baroque", "Bach, Johann Sebastian") == ["Keyboard", "Choral"]
    assert catalog.instrumentations("Romantic", "Bach, Johann Sebastian") == []
    assert catalog.check(" Romantic", "Chopin, Frederic ", "Keyboard") == ("Romantic", "Chopin, Frederic", "Keyboard")
    shipped = PromptCatalog.from_file(REPO_ROOT / "gradio" / "prompts.txt")
    assert len(shipped) == 112 and len(shipped.periods()) == 3  # the published NotaGen-X combinations
    assert all(shipped.random() in shipped for _ in range(20))


@pytest.mark.parametrize("triple, message", [
    (("Modern", "Bach, Johann Sebastian", "Choral"), "known periods: Baroque, Romantic"),
    (("Romantic", "Bach, Johann Sebastian", "Keyboard"), "composers of the Romantic period: Chopin, Frederic"),
    (("Baroque", "Bach, Johann Sebastian", "Orchestral"), "instrumentations for Bach, Johann Sebastian: Choral"),
    (("", "", ""), "is not a combination this model knows")])
def test_a_triple_outside_the_catalog_is_refused_with_what_is_known(triple, message):
    catalog = PromptCatalog.from_text("Baroque|Bach, Johann Sebastian|Choral\nRomantic|Chopin, Frederic|Keyboard\n")
    with pytest.raises(PromptCatalogError, match=message):
        catalog.check(*triple)


def test_a_malformed_prompts_file_names_its_bad_lines(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("Baroque_Bach_Choral\njust one field\nRomantic_Chopin\n")
    with pytest.raises(PromptCatalogError, match="line\\(s\\) 2, 3"):
        PromptCatalog.from_file(path)
    with pytest.raises(PromptCatalogError, match="not found"):
        PromptCatalog.from_file(tmp_path / "missing.txt")


# -- rendering ---------------------------------------------------------------------------------
def test_score_pages_render_from_a_worker_thread():
    """verovio keeps its font path per thread: a server's worker thread must engrave too."""
    from notagen.abc import abc_to_svg_pages

    results = {}

    def engrave():
        try:
            results["pages"] = abc_to_svg_pages(BACH["interleaved"])
        except Exception as error:  # noqa: BLE001 - reported below
            results["error"] = error

    worker = threading.Thread(target=engrave)
    worker.start()
    worker.join(120)
    assert "error" not in results, results.get("error")
    pages = results["pages"]
    assert len(pages) >= 1 and pages[0].lstrip().startswith(("<svg", "<?xml"))
    assert sum(page.count('class="note"') for page in pages) > 100  # 4 voices of a chorale


def synth_routes():
    from notagen.audio import system_soundfont

    routes = ["midirenderer"]
    if shutil.which("fluidsynth") and system_soundfont():
        routes.append("fluidsynth")
    elif os.environ.get("CI"):
        raise AssertionError("CI installs fluidsynth and fluid-soundfont-gm: both synth routes must be tested")
    return routes


def test_a_long_reverb_tail_is_cut_and_faded_after_the_last_note():
    from notagen.audio import MAX_TAIL_SECONDS, finish

    rate = 1000
    sound = np.full((3 * rate, 2), 0.5, dtype="float32")
    tail = (0.4 * np.exp(-np.arange(6 * rate) / (2 * rate)))[:, None].repeat(2, axis=1).astype("float32")
    samples = finish(np.concatenate([sound, tail]), rate, last_note_seconds=3.0)
    assert len(samples) == int((3.0 + MAX_TAIL_SECONDS) * rate)  # the -60 dB point lies ~10 s later
    assert samples[-1].max() == 0.0 and samples[-100].max() > 0.0  # faded, not clicked
    short = finish(np.concatenate([sound, np.zeros((5 * rate, 2), "float32")]), rate, last_note_seconds=3.0)
    assert len(short) == 4 * rate  # silence past the sound keeps its one-second release, no more


@pytest.mark.parametrize("route", synth_routes())
@pytest.mark.parametrize("audio_format", ["mp3", "wav"])
def test_audio_is_real_sound_as_long_as_its_midi(tmp_path, route, audio_format):
    import soundfile

    from notagen.abc import abc_to_midi
    from notagen.audio import find_synth, midi_seconds, midi_to_audio

    midi = abc_to_midi(BACH["interleaved"], tmp_path / "bach.mid")
    audio = midi_to_audio(midi, tmp_path / f"bach.{audio_format}", find_synth(route))
    samples, rate = soundfile.read(str(audio.path), always_2d=True)
    seconds = len(samples) / rate
    assert audio.synth.route == route
    assert abs(seconds - audio.seconds) < 0.1
    assert midi_seconds(midi) - 0.1 <= seconds <= midi_seconds(midi) + 2.0  # a release tail, no more
    rms = float(np.sqrt(np.mean(samples ** 2)))
    assert 0.02 < rms < 0.9
    # the sound follows the score: the first second (a pickup, then four voices) is not silent
    assert float(np.abs(samples[:rate]).max()) > 0.05


def test_audio_errors_are_clear(tmp_path):
    from notagen.audio import AudioError, find_synth, midi_to_audio

    with pytest.raises(AudioError, match="unknown synth 'piano'"):
        find_synth("piano")
    with pytest.raises(AudioError, match="soundfont not found"):
        find_synth("midirenderer", tmp_path / "none.sf2")
    with pytest.raises(AudioError, match="unknown audio format"):
        midi_to_audio(tmp_path / "x.mid", tmp_path / "x.aiff")
    with pytest.raises(AudioError, match="MIDI file not found"):
        midi_to_audio(tmp_path / "x.mid", tmp_path / "x.wav")


# -- the backend -------------------------------------------------------------------------------
def demo_settings(tmp_path, *extra):
    return parse_settings(REPO_ROOT / "gradio" / "config.py",
                          ["--weights_path", str(TINY_WEIGHTS), "--output_dir", str(tmp_path / "runs"),
                           "--device", "cpu", "--synth", "midirenderer", *extra])


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    from notagen.demo.session import DemoBackend

    return DemoBackend(demo_settings(tmp_path_factory.mktemp("demo"), "--max_chars", "1500"), log=lambda line: None)


def test_each_run_has_its_own_folder_with_settings_seed_and_files(backend):
    from notagen.demo.session import DemoRequest

    request = DemoRequest(prompt_lines=("%Baroque", "%Bach, Johann Sebastian", "%Choral"), seed=11, variations=2)
    snapshots = list(backend.generate(request))
    first = snapshots[-1]
    assert first.done and len(snapshots) > 2 and first.seed == 11
    again = list(backend.generate(request))[-1]
    assert again.run_dir != first.run_dir and first.run_dir.is_dir()  # the earlier run is kept
    record = json.loads((first.run_dir / "settings.json").read_text())
    assert record["seed"] == 11 and record["settings"]["top_k"] == 9 and record["settings"]["variations"] == 2
    assert record["prompt"] == "%Baroque\n%Bach, Johann Sebastian\n%Choral\n"
    assert [v["status"] for v in record["variations"]] == [v.status for v in first.variations]
    for variation, repeated in zip(first.variations, again.variations):
        assert variation.status in ("finished", "failed") and (variation.status == "finished" or variation.reason)
        raw = Path(variation.files["raw"])
        assert raw.parent == first.run_dir and raw.read_text() == variation.text
        assert variation.text.startswith("%Baroque\n") and len(variation.text) > 100
        assert repeated.text == variation.text  # same seed, same music
    assert first.patches == sum(v.patches for v in first.variations) > 0


def test_prompt_strength_reaches_the_sampler_and_the_record(backend):
    """The page's guidance slider: the same seed with guidance 2.5 writes another piece than with
    guidance off, and settings.json says which was used."""
    from notagen.demo.session import DemoRequest

    lines = ("%Romantic", "%Chopin, Frederic", "%Keyboard")
    plain = list(backend.generate(DemoRequest(prompt_lines=lines, seed=5)))[-1]
    guided = list(backend.generate(DemoRequest(prompt_lines=lines, seed=5, guidance=2.5)))[-1]
    assert guided.variations[0].text.startswith("%Romantic\n")
    assert guided.variations[0].text != plain.variations[0].text
    assert json.loads((guided.run_dir / "settings.json").read_text())["settings"]["guidance"] == 2.5
    assert json.loads((plain.run_dir / "settings.json").read_text())["settings"]["guidance"] == 1.0


def test_stop_ends_the_engine_at_the_next_patch(backend):
    from notagen.demo.session import DemoRequest

    stop = threading.Event()
    request = DemoRequest(prompt_lines=("%Romantic", "%Chopin, Frederic", "%Keyboard"), seed=3, variations=2)
    at_stop = None
    for progress in backend.generate(request, stop):
        if at_stop is None and progress.patches >= 5:
            at_stop = progress.patches
            stop.set()
    last = progress
    assert last.done and last.stopped
    assert {v.status for v in last.variations} == {"stopped"}
    assert all(v.reason == "stopped by the user" for v in last.variations)
    assert last.patches <= at_stop + len(last.variations)  # at most the rest of one round of patches
    assert all(Path(v.files["raw"]).read_text() == v.text for v in last.variations)
    assert backend.lock.acquire(blocking=False)  # the generation slot is free again
    backend.lock.release()


def test_pasted_chorale_is_rendered_to_score_audio_and_files(backend, tmp_path):
    edited = backend.render_edited(BACH["interleaved"], None)
    assert edited.status == "finished" and edited.reason == ""
    folder = Path(edited.files["abc"]).parent
    assert Path(edited.files["abc"]).read_text() == BACH["interleaved"]
    for kind, suffix in (("musicxml", ".musicxml"), ("midi", ".mid"), ("audio", ".mp3")):
        assert Path(edited.files[kind]) == folder / f"edit1{suffix}" and Path(edited.files[kind]).stat().st_size > 1000
    assert [Path(p).name for p in edited.files["svg"]] == [f"edit1_page{n}.svg" for n in range(1, len(edited.svg_pages) + 1)]
    assert edited.audio_seconds > 20
    second = backend.render_edited(BACH["interleaved"].replace("K:G", "K:D"), folder)
    assert Path(second.files["abc"]).name == "edit2.abc" and Path(edited.files["abc"]).is_file()


def test_text_that_does_not_convert_gets_its_reason(backend):
    from notagen.generation.prompt import PromptError

    broken = backend.render_edited("<<<>>> ||| ]]]] [[[\n", None)
    assert broken.status == "failed" and broken.reason.startswith("no notes")
    with pytest.raises(PromptError, match="empty"):
        backend.render_edited("  \n", None)


def test_no_checkpoint_names_the_command_that_makes_one(tmp_path, monkeypatch):
    from notagen import paths
    from notagen.generation.run import resolve_weights

    monkeypatch.setattr(paths, "SHIPPED_WEIGHTS", tmp_path / "none")
    monkeypatch.setattr(paths, "MAIN_JOB_WEIGHTS", (str(tmp_path / "nothing"),))
    with pytest.raises(SetupError, match="bash run.sh"):
        resolve_weights("")  # the demo's default


# -- inference.py --render ---------------------------------------------------------------------
def test_inference_render_writes_score_pages_and_audio(tmp_path):
    from notagen.generation.piece import PieceResult
    from notagen.generation.prompt import Prompt
    from notagen.generation.run import render_settings, write_piece

    cfg = parse_settings(REPO_ROOT / "inference" / "config.py", ["--render", "true", "--synth", "midirenderer"])
    piece = load_vector("rest_unreduce.json")["rest_unreduce"][0]
    result = PieceResult(0, Prompt(), piece["text"], "finished")
    entry = write_piece(result, "piece", tmp_path, "run", True, render_settings(cfg))
    assert entry["status"] == "ok", entry["reason"]
    files = entry["files"]
    assert Path(files["audio"]) == tmp_path / "audio" / "run" / "piece.mp3"
    assert [Path(p) for p in files["svg"]][0] == tmp_path / "svg" / "run" / "piece_page1.svg"
    assert Path(files["musicxml"]).parent == tmp_path / "xml" / "run" and entry["audio_seconds"] > 1
    plain = write_piece(result, "plain", tmp_path, "run", True)
    assert "svg" not in plain["files"] and "audio" not in plain["files"] and "midi" in plain["files"]


def test_the_growing_score_is_engraved_from_complete_lines_only(backend):
    from notagen.continuation import music_to_prompt
    from notagen.demo.session import Variation

    text = music_to_prompt(CHORALE, ("%Baroque", "%Bach, Johann Sebastian", "%Choral")).prompt.text
    cut = text.index("[r:6/")  # six complete bars, then half of the seventh
    growing = Variation(0, text=text[:cut + 30])
    backend.engrave_partial(growing)
    assert growing.score_version == 1 and len(growing.svg_pages) == 1
    assert growing.svg_pages[0].count('class="measure"') == 6
    garbage = Variation(0, text="%Baroque\n[r:0/3][V:9]((((\n")
    backend.engrave_partial(garbage)  # does not convert yet: nothing changes, nothing raises
    assert garbage.score_version == 0 and garbage.svg_pages == []


def test_conversions_from_several_threads_keep_their_results_and_the_streams(tmp_path):
    """The converters' redirections and globals are process-wide: threads take turns."""
    import sys

    from notagen.abc import abc_to_musicxml, musicxml_to_abc

    standard = musicxml_to_abc(abc_to_musicxml(BACH["interleaved"]).encode("utf-8"))
    stdout, stderr = sys.stdout, sys.stderr
    results, errors = [], []

    def convert():
        try:
            for _ in range(3):
                results.append(musicxml_to_abc(abc_to_musicxml(BACH["interleaved"]).encode("utf-8")))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    workers = [threading.Thread(target=convert) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(300)
    assert not errors and len(results) == 12 and all(text == standard for text in results)
    assert sys.stdout is stdout and sys.stderr is stderr


# -- controls, stalls, plain reasons, rewrite --------------------------------------------------
def test_controls_reach_the_piece_and_the_record(backend):
    from notagen.demo.session import DemoRequest

    request = DemoRequest(prompt_lines=("%Baroque", "%Bach, Johann Sebastian", "%Choral"), seed=0, key="Eb",
                          tempo=72, bars=4)  # no meter: the tiny model rarely keeps one (test_controls.py checks it)
    last = list(backend.generate(request))[-1]
    text = last.variations[0].text
    assert [line for line in text.split("\n") if line[:2] in ("Q:", "K:")] == ["Q:1/4=72", "K:Eb"]
    body = [line[:line.index("]") + 1] for line in text.split("\n") if line.startswith("[r:")]
    total = 4 + ("[r:0/4]" in text)  # a pickup comes on top
    assert body == [f"[r:{i}/{total - 1 - i}]" for i in range(len(body))] and len(body) >= 2
    settings = json.loads((last.run_dir / "settings.json").read_text())["settings"]
    assert (settings["key"], settings["meter"], settings["tempo"], settings["bars"]) == ("Eb", "", 72, 4)


def test_a_stalled_piece_ends_keeps_its_text_and_frees_the_slot(tmp_path):
    """A meter the tiny model cannot keep, and a stall limit of half a second: no bar stands, the
    piece ends as stalled with its reason in plain words, and the next run can start."""
    from notagen.demo.session import DemoBackend, DemoRequest, plain_reason

    stalling = DemoBackend(demo_settings(tmp_path, "--stall_seconds", "0.5", "--bar_retries", "1000"), log=lambda line: None)
    request = DemoRequest(prompt_lines=("%Baroque", "%Bach, Johann Sebastian", "%Choral"), seed=1, meter="7/8", bars=8)
    drafts = []
    for progress in stalling.generate(request):
        drafts.append(progress.variations[0].draft)
    variation = progress.variations[0]
    assert (variation.status, variation.reason) == ("stalled", "no_new_bar")
    assert plain_reason(variation, stalling.cfg)[0].startswith(f"no new bar for 0.5 s: the model kept rewriting bar "
                                                                f"{variation.bars + 1}")
    assert Path(variation.files["raw"]).read_text() == variation.text and variation.text.startswith("%Baroque\n")
    assert any(drafts[:-1]) and not drafts[-1]  # the line being rewritten was on show while it was written
    assert stalling.lock.acquire(blocking=False)  # the slot is free for the next user
    stalling.lock.release()


@pytest.mark.parametrize("reason, words, has_detail", [
    ("abc2xml failed: -- skipped header: (field X,1)", "the model wrote an invalid header line; the raw text is kept below", True),
    ("unreduce error: no %%score line: cannot tell", "the model's bars do not fit its header", True),
    ("max_chars", "the piece grew past 1500 characters, the length limit", False),
    ("verovio failed: no page rendered; audio: no synth", "the score could not be drawn", True),
])
def test_failure_reasons_are_said_in_plain_words(backend, reason, words, has_detail):
    from notagen.demo.session import Variation, plain_reason

    plain, detail = plain_reason(Variation(0, reason=reason), backend.cfg)
    assert plain.startswith(words) and (detail == reason) == has_detail
    assert plain_reason(Variation(0), backend.cfg) == ("", "")


def test_rewrite_keeps_the_first_bars_of_the_piece_on_screen(backend, tmp_path):
    from notagen.demo.session import Variation
    from notagen.generation.prompt import PromptError

    shown = Variation(0, files={"musicxml": str(CHORALE)})
    lines = ("%Baroque", "%Bach, Johann Sebastian", "%Choral")
    prompt = backend.rewrite_prompt(shown, lines, 4)
    body = [line for line in prompt.text.split("\n") if line.startswith("[r:")]
    assert prompt.text.startswith("%Baroque\n%Bach, Johann Sebastian\n%Choral\n") and len(body) == 4
    total = int(body[0].split("/")[1].split("]")[0]) + 1
    assert body[3].startswith(f"[r:3/{total - 4}]")  # the model is told how many bars are still to come
    with pytest.raises(PromptError, match=f"the piece has {total} bars: keep 1 to {total - 1}"):
        backend.rewrite_prompt(shown, lines, total)
    with pytest.raises(PromptError, match="no score to rewrite"):
        backend.rewrite_prompt(Variation(0, files={"raw": "x.abc"}), lines, 4)
