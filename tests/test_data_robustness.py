"""Bad inputs never stop a batch: each is logged with its reason, the others are converted, the
summary counts add up and no partial file is left. Also the runner's timeout / crash handling and
the exports' errors.
"""
from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from notagen.abc import AbcError, abc_to_midi, abc_to_musicxml, abc_to_svg_pages, run_batch, Task
from notagen.abc.batch import write_outputs
import subprocess
import sys

from conftest import REPO_ROOT, pipeline_item
from data_support import MUSIC21_CORPUS, files_under, run_script, summary_line

BACH = pipeline_item("bach/bwv269.mxl")


def tiny_musicxml(measures_per_part: list[int], title: bytes = b"Tiny") -> bytes:
    """A hand-written MusicXML score: one whole note C per measure, parts of the given lengths."""
    attributes = (b"<attributes><divisions>1</divisions><key><fifths>0</fifths></key><time><beats>4</beats>"
                  b"<beat-type>4</beat-type></time><clef><sign>G</sign><line>2</line></clef></attributes>")
    note = b"<note><pitch><step>C</step><octave>4</octave></pitch><duration>4</duration><type>whole</type></note>"
    part_list = b"".join(b'<score-part id="P%d"><part-name>Voice %d</part-name></score-part>' % (i, i)
                         for i in range(1, len(measures_per_part) + 1))
    parts = b"".join(
        b'<part id="P%d">' % i + b"".join(b'<measure number="%d">' % m + (attributes if m == 1 else b"") + note
                                         + b"</measure>" for m in range(1, count + 1)) + b"</part>"
        for i, count in enumerate(measures_per_part, start=1))
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<score-partwise version="3.1"><movement-title>' + title
            + b"</movement-title><part-list>" + part_list + b"</part-list>" + parts + b"</score-partwise>")


@pytest.fixture(scope="module")
def bad_batch(tmp_path_factory):
    """Stage 1 then stage 2 on a folder mixing good scores with every kind of bad input."""
    work = tmp_path_factory.mktemp("bad")
    xml = work / "xml"
    (xml / "sub").mkdir(parents=True)
    shutil.copy(MUSIC21_CORPUS / "bach" / "bwv269.mxl", xml)
    shutil.copy(MUSIC21_CORPUS / "bach" / "bwv66.6.mxl", xml / "sub")  # found recursively
    (xml / "corrupt.mxl").write_bytes((MUSIC21_CORPUS / "bach" / "bwv269.mxl").read_bytes()[:2000])
    (xml / "page.xml").write_bytes(b'<?xml version="1.0"?><html><body>not music</body></html>')
    (xml / "empty.musicxml").write_bytes(b"")
    (xml / "latin1.xml").write_bytes(tiny_musicxml([2, 2], title=b"Caf\xe9"))  # declared UTF-8
    (xml / "unequal.xml").write_bytes(tiny_musicxml([3, 2]))
    stage1 = run_script("1_batch_xml2abc.py", "--ori_folder", xml, "--des_folder", work / "std", "--workers", 2)

    (work / "std" / "latin1_abc.abc").write_bytes(BACH["standard_abc"].replace("T:BWV 269", "T:Caf\u00e9")
                                                  .encode("latin-1"))
    (work / "std" / "empty_abc.abc").write_bytes(b"")
    (work / "std" / "novoice.abc").write_text("X:1\nL:1/8\nK:C\nCDEF GABc|\n")
    stage2 = run_script("2_data_preprocess.py", "--ori_folder", work / "std", "--interleaved_folder",
                        work / "interleaved", "--augmented_folder", work / "aug", "--workers", 2)
    return work, stage1, stage2


def logged_reasons(log: Path) -> dict[str, str]:
    rows = [line.split("\t") for line in log.read_text().splitlines() if not line.startswith("#")]
    return {Path(name).name: reason.split(":")[0] for name, reason in rows}


def test_stage1_logs_each_bad_file_and_converts_the_rest(bad_batch):
    work, stage1, _ = bad_batch
    assert summary_line(stage1).startswith(  # reasons: most frequent first, then alphabetical
        "3 converted, 4 failed (corrupted .mxl: 1, empty file: 1, not MusicXML: 1, wrong encoding: 1)")
    assert len(files_under(work / "xml")) == 3 + 4  # every input is either converted or failed
    assert logged_reasons(work / "std_failures.log") == {
        "corrupt.mxl": "corrupted .mxl", "page.xml": "not MusicXML", "empty.musicxml": "empty file",
        "latin1.xml": "wrong encoding"}


def test_stage2_rejects_unequal_bars_and_bad_abc(bad_batch):
    work, _, stage2 = bad_batch
    assert summary_line(stage2).startswith(
        "2 converted, 4 failed (empty file: 1, no voices: 1, unequal bar numbers: 1, wrong encoding: 1)")
    assert logged_reasons(work / "aug_failures.log") == {
        "unequal.abc": "unequal bar numbers", "latin1_abc.abc": "wrong encoding",
        "empty_abc.abc": "empty file", "novoice.abc": "no voices"}
    assert "V:1 has 3, V:2 has 2" in (work / "aug_failures.log").read_text()


def test_no_partial_or_stray_files(bad_batch):
    work, _, _ = bad_batch
    assert files_under(work / "std") == ["bwv269.abc", "empty_abc.abc", "latin1_abc.abc", "novoice.abc",
                                         "sub_bwv66.6.abc", "unequal.abc"]
    assert files_under(work / "interleaved") == ["bwv269.abc", "sub_bwv66.6.abc"]
    augmented = files_under(work / "aug")
    assert len(augmented) == 30 and all(Path(name).stem.rsplit("_", 1)[0] in ("bwv269", "sub_bwv66.6")
                                        for name in augmented)
    assert [entry.count("\n") for entry in [(work / "aug.jsonl").read_text()]] == [2]


def _toy_work(payload):
    if payload == "hang":
        time.sleep(60)
    if payload == "crash":
        os._exit(3)
    if payload == "bad":
        raise AbcError("empty file")
    return {payload: payload.upper()}


def test_runner_times_out_and_survives_crashes(tmp_path):
    names = ["a", "hang", "b", "crash", "bad", "c"]
    tasks = [Task(name, str(tmp_path / name) if len(name) == 1 else name, (tmp_path / name,)) for name in names]
    started = time.monotonic()
    report = run_batch(tasks, _toy_work, workers=2, timeout=1.0, failure_log=tmp_path / "log", progress=False)
    assert time.monotonic() - started < 10
    assert sorted(report.converted) == ["a", "b", "c"]
    assert dict(report.failures) == {"hang": "timeout: no result after 1 s", "crash": "worker crashed: exit code 3",
                                     "bad": "empty file"}
    assert report.summary().startswith("3 converted, 3 failed (")
    assert (tmp_path / "a").read_text() == str(tmp_path / "a").upper()
    assert len((tmp_path / "log").read_text().splitlines()) == 4  # summary + 3 failures
    assert files_under(tmp_path) == ["a", "b", "c", "log"]  # nothing from the killed workers


def test_outputs_of_a_task_are_all_written_or_none(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder is needed")
    with pytest.raises(OSError):
        write_outputs({tmp_path / "first.abc": "x", tmp_path / "blocker" / "second.abc": "y"})
    assert files_under(tmp_path) == ["blocker"]


def test_exports_of_good_abc(tmp_path):
    midi = abc_to_midi(BACH["augmented"]["D"], tmp_path / "out.mid")  # rest-reduced input
    assert midi.read_bytes()[:4] == b"MThd"
    pages = abc_to_svg_pages(BACH["interleaved"])
    assert len(pages) == 1 and "<svg" in pages[0][:300]
    assert "<score-partwise" in abc_to_musicxml("%Baroque\n%Bach, Johann Sebastian\n%Choral\n" + BACH["interleaved"])


@pytest.mark.parametrize("text, reason", [("", "empty ABC"), ("%Baroque\n%X\n%Y\n", "empty ABC"),
                                          ("<<<>>> ||| ]]]] [[[\n", "no notes")])
def test_exports_refuse_unconvertible_abc(tmp_path, text, reason):
    with pytest.raises(AbcError, match=reason):
        abc_to_musicxml(text)
    with pytest.raises(AbcError, match=reason):
        abc_to_svg_pages(text)
    with pytest.raises(AbcError, match=reason):
        abc_to_midi(text, tmp_path / "never.mid")
    assert not (tmp_path / "never.mid").exists()


@pytest.mark.parametrize("script, output_flag", [("2_data_preprocess.py", "--interleaved_folder"),
                                                  ("2_data_preprocess.py", "--augmented_folder"),
                                                  ("1_batch_xml2abc.py", "--des_folder"),
                                                  ("3_batch_abc2xml.py", "--des_folder")])
def test_a_stage_never_writes_into_its_input_folder(tmp_path, script, output_flag):
    source = tmp_path / "std"
    source.mkdir()
    (source / "bach.abc").write_text(BACH["standard_abc"])
    before = files_under(tmp_path)
    others = {"2_data_preprocess.py": ["--interleaved_folder", tmp_path / "inter", "--augmented_folder", tmp_path / "aug"],
              "1_batch_xml2abc.py": [], "3_batch_abc2xml.py": []}[script]
    args = ["--ori_folder", source, *others]
    if output_flag in args:
        args[args.index(output_flag) + 1] = source
    else:
        args += [output_flag, source]
    result = subprocess.run([sys.executable, str(REPO_ROOT / "data" / script), *map(str, args)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: output folder") and "is the input folder" in result.stderr
    assert files_under(tmp_path) == before  # nothing written, the source untouched
    nested = subprocess.run([sys.executable, str(REPO_ROOT / "data" / script), "--ori_folder", str(source),
                             *[str(a) for a in others], output_flag, str(source / "out")],
                            capture_output=True, text=True, timeout=300)
    assert nested.returncode == 2 and "overlaps the input folder" in nested.stderr


def _scores(folder: Path, copies: int) -> Path:
    folder.mkdir(parents=True)
    source = MUSIC21_CORPUS / "beethoven" / "opus18no1" / "movement1.mxl"  # a few seconds per copy
    for index in range(copies):
        shutil.copy(source, folder / f"quartet{index:03d}.mxl")
    return folder


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_a_killed_batch_and_its_pipe_reaches_the_end(tmp_path, how):
    import threading

    scores = _scores(tmp_path / "scores", 12)
    command = [sys.executable, str(REPO_ROOT / "data" / "1_batch_xml2abc.py"), "--ori_folder", str(scores),
               "--des_folder", str(tmp_path / "abc"), "--workers", "2"]
    batch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (tmp_path / "abc").is_dir() or not any((tmp_path / "abc").iterdir()):
        assert time.monotonic() < deadline and batch.poll() is None, "the batch never got going"
        time.sleep(0.1)
    batch.send_signal(how)
    ended = threading.Event()
    reader = threading.Thread(target=lambda: (batch.stdout.read(), ended.set()), daemon=True)
    reader.start()
    assert ended.wait(20), "a reader of the killed batch's output still waits: a worker holds the pipe"
    batch.wait(10)
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", str(scores)], capture_output=True, text=True).stdout.split()
    assert left == [], f"workers outlived their parent: {left}"


def test_stale_temporaries_are_removed_and_names_cannot_forge_log_records(tmp_path):
    scores = tmp_path / "scores"
    scores.mkdir()
    shutil.copy(MUSIC21_CORPUS / "bach" / "bwv269.mxl", scores / "bach.mxl")
    forged = "evil\tnot a reason\nfake.mxl"
    (scores / f"{forged}.musicxml").write_text("<html>not music</html>")
    out = tmp_path / "abc"
    out.mkdir()
    (out / ".bach.abc.x1y2z3.tmp").write_text("left by a killed run")
    (out / ".unrelated.txt.tmp").write_text("not ours")
    stdout = run_script("1_batch_xml2abc.py", "--ori_folder", scores, "--des_folder", out, "--workers", "1")
    assert "1 converted, 1 failed" in summary_line(stdout)
    assert sorted(p.name for p in out.iterdir()) == [".unrelated.txt.tmp", "bach.abc"]
    log_lines = (tmp_path / "abc_failures.log").read_text().splitlines()
    assert len(log_lines) == 2  # the summary and one record, however the name is spelled
    name, reason = log_lines[1].split("\t")
    assert name.endswith("evil\\tnot a reason\\nfake.mxl.musicxml") and reason.startswith("not MusicXML")


def test_a_score_that_inflates_past_the_limit_is_refused_unread(tmp_path):
    import zipfile

    scores = tmp_path / "scores"
    scores.mkdir()
    shutil.copy(MUSIC21_CORPUS / "bach" / "bwv269.mxl", scores / "bach.mxl")
    with zipfile.ZipFile(scores / "bomb.mxl", "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("score.xml", "w") as member:  # 1 GB of MusicXML-looking padding
            member.write(b'<?xml version="1.0"?><score-partwise>')
            for _ in range(1024):
                member.write(b" " * 2**20)
    assert (scores / "bomb.mxl").stat().st_size < 4 * 2**20
    # a fresh parent process, so its children's peak memory is this batch's alone
    measure = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(done.stdout); print('peak_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", measure, sys.executable, str(REPO_ROOT / "data" / "1_batch_xml2abc.py"),
                           "--ori_folder", str(scores), "--des_folder", str(tmp_path / "abc"), "--workers", "1"],
                          capture_output=True, text=True, timeout=600)
    assert "1 converted, 1 failed (too large: 1)" in summary_line(done.stdout), done.stdout + done.stderr
    reason = (tmp_path / "abc_failures.log").read_text().splitlines()[1].split("\t")[1]
    assert reason.startswith("too large: score.xml inflates to more than 64 MB")
    peak_mib = int(done.stdout.split("peak_kib")[1]) / 1024
    assert peak_mib < 600, f"a worker took {peak_mib:.0f} MiB for a 1 GB member"
