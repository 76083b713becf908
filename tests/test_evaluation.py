"""clamp2/evaluate.py and notagen.evaluation on hand-made cases with known answers: two identical
folders (overlap 1, critic AUC 0.5), scrambled pieces (alignment 0, critic AUC ~1), a composer
classifier on two clearly different styles of real pieces (well above chance), and the script's
report files."""
from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT, VECTORS
from notagen import evaluation
from data_support import MUSIC21_CORPUS

TINY_CLAMP2 = VECTORS / "tiny_clamp2.pth"
BACH_PROMPT = "Baroque|Bach, Johann Sebastian|Choral"
STYLES = {"bach": ("%Baroque", "%Bach, Johann Sebastian", "%Choral"),
          "palestrina": ("%Renaissance", "%Palestrina, Giovanni Pierluigi da", "%Choral")}


def interleaved_pieces(style: str, count: int) -> list[str]:
    """`count` real pieces of a style from music21's corpus, interleaved, with their prompt lines."""
    from notagen.abc import interleave_abc, clean_abc, xml_file_to_abc

    pattern = {"bach": "bach/bwv*.mxl", "palestrina": "palestrina/*.krn"}[style]
    texts = []
    for path in sorted(MUSIC21_CORPUS.glob(pattern)):
        try:
            if path.suffix == ".krn":
                from music21 import converter
                from music21.musicxml.m21ToXml import GeneralObjectExporter

                from notagen.abc import musicxml_to_abc

                standard = musicxml_to_abc(GeneralObjectExporter(converter.parse(path)).parse(), path.name)
            else:
                standard = xml_file_to_abc(path)
            texts.append("".join(f"{line}\n" for line in STYLES[style]) + interleave_abc(clean_abc(standard)))
        except Exception:  # noqa: BLE001 - a corpus piece that does not convert is simply not used
            continue
        if len(texts) == count:
            break
    assert len(texts) == count, f"only {len(texts)} {style} pieces converted"
    return texts


def write(folder: Path, texts: list[str], stem: str = "piece") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, text in enumerate(texts):
        (folder / f"{stem}{index:02d}.abc").write_text(text)
    return folder


TOKEN = re.compile(r"\[[^\]]*\]|\"[^\"]*\"|![^!]*!|[\^_=]*[A-Ga-gzZx][,']*\d*/*\d*|.")


def scrambled(text: str, rng: random.Random) -> str:
    """Every bar line with its first voice's notes shuffled and one more quarter note: no bar of the
    first voice lasts as long as the other voices' any more."""
    def shuffle_voice(match):
        tokens = [token for token in TOKEN.findall(match.group(2).rstrip("|:]")) if token.strip()]
        rng.shuffle(tokens)
        return match.group(1) + "".join(tokens) + "C2|"

    return "\n".join(re.sub(r"^(\[V:1\])([^\[]*)", shuffle_voice, line) if line.startswith("[V:1]") else line
                     for line in text.split("\n"))


@pytest.fixture(scope="module")
def bach() -> list[str]:
    return interleaved_pieces("bach", 16)


@pytest.fixture(scope="module")
def palestrina() -> list[str]:
    return interleaved_pieces("palestrina", 16)


def test_overlap_of_histograms():
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5])
    assert evaluation.overlap(p, p) == 1.0 and evaluation.overlap(p, q) == 0.5
    assert evaluation.overlap(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == 0.0


def test_two_identical_folders_overlap_fully_and_fool_the_critic(bach, tmp_path):
    a, b = write(tmp_path / "a", bach), write(tmp_path / "b", bach)
    report = evaluation.evaluate_folder(a, b, str(TINY_CLAMP2))
    assert report.validity["usable"] == 1.0 and report.validity["bar_alignment"] == 1.0
    assert all(value == pytest.approx(1.0) for value in report.statistics.values()), report.statistics
    assert report.style["critic_auc"] == pytest.approx(0.5, abs=0.02)  # copies stay in one fold
    assert report.style["novelty"]["copies"] == len(bach)  # every piece is its own reference's copy


def test_each_piece_s_statistics_are_read_once_for_the_overlaps_and_the_critic(bach, tmp_path, monkeypatch):
    read = []
    original = evaluation.music_statistics.piece_values
    monkeypatch.setattr(evaluation.music_statistics, "piece_values",
                        lambda score: read.append(score) or original(score))
    report = evaluation.evaluate_folder(write(tmp_path / "a", bach[:3]), write(tmp_path / "b", bach[3:7]),
                                        str(TINY_CLAMP2))
    assert "critic_auc" in report.style and report.statistics
    assert len(read) == 3 + 4 and len({id(score) for score in read}) == 7


def test_scrambled_pieces_are_misaligned_and_easy_for_the_critic(bach, tmp_path):
    rng = random.Random(0)
    broken = write(tmp_path / "scrambled", [scrambled(text, rng) for text in bach])
    real = write(tmp_path / "real", bach)
    pieces = evaluation.read_pieces(broken)
    result = evaluation.validity(pieces)
    assert result["usable"] == 0.0 and result["bar_alignment"] == 0.0, result
    real_pieces = evaluation.read_pieces(real)
    evaluation.validity(real_pieces)
    features = evaluation.critic_features(evaluation.features_of([p.text for p in pieces], TINY_CLAMP2),
                                          evaluation.pieces_values([p.score for p in pieces]))
    real_features = evaluation.critic_features(evaluation.features_of([p.text for p in real_pieces], TINY_CLAMP2),
                                               evaluation.pieces_values([p.score for p in real_pieces]))
    assert evaluation.critic_auc(real_features, features) > 0.95


def test_a_composer_classifier_tells_two_styles_apart(bach, palestrina):
    texts = bach + palestrina
    labels = ["Bach"] * len(bach) + ["Palestrina"] * len(palestrina)
    features = evaluation.features_of(texts, TINY_CLAMP2)
    prompts = ["Bach"] * 4 + ["Palestrina"] * 4
    generated = np.concatenate([features[:4], features[len(bach):len(bach) + 4]])
    result = evaluation.style_classifier(features, labels, generated, prompts)
    assert result["chance"] == 0.5 and result["classes"] == 2
    assert result["accuracy"] >= 0.8, result
    assert result["adherence_top1"] >= 0.75 and result["adherence_top5"] == 1.0
    checked = lambda name, texts: evaluation.pieces_values(  # noqa: E731
        [evaluation.check_piece(evaluation.EvaluatedPiece(name, t)).score for t in texts])
    assert evaluation.histogram_overlaps(checked("b", bach[:6]), checked("p", palestrina[:6]))["note_duration"] < 0.9


def test_duplicate_groups_join_near_copies():
    x = np.array([[1.0, 0.0], [1.0, 1e-5], [0.0, 1.0], [1.0, 2e-5]])
    groups = evaluation.duplicate_groups(x)
    assert groups[0] == groups[1] == groups[3] != groups[2]


def test_the_script_writes_the_report(bach, palestrina, tmp_path):
    generated = write(tmp_path / "generated", bach[:8])
    reference = write(tmp_path / "reference", bach[8:])
    style = write(tmp_path / "style", bach + palestrina)
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "clamp2" / "evaluate.py"), "--generated_dir", str(generated),
                           "--reference_dir", str(reference), "--clamp2_weights_path", str(TINY_CLAMP2),
                           "--style_train_dir", str(style), "--eval_output_dir", str(out), "--num_threads", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = done.stdout.strip().splitlines()[-2]
    assert summary.startswith("evaluation: 100% of 8 usable, bar alignment 100%") and "critic AUC" in summary
    report = json.loads((out / "report.json").read_text())
    assert report["validity"]["pieces"] == 8 and f"critic AUC {report['style']['critic_auc']:.2f}" in summary
    assert report["style"]["classifier"]["adherence_pieces"] == 8
    assert report["style"]["classifier"]["by_prompt"] == {BACH_PROMPT: {"pieces": 8, "top1": pytest.approx(
        report["style"]["classifier"]["adherence_top1"]), "top5": 1.0}}
    assert report["style"]["fmd"] > 0 and report["style"]["fmd_pieces"] == "8 generated, 8 reference"
    # every "generated" chorale is a choir, as every real piece of the style set is (one with a horn beside it)
    texture = report["adherence"]["texture"]
    assert texture["pieces"] == 8 and texture["adherence"] == 1.0 and texture["real_adherence"] == 1.0
    assert texture["by_prompt"][BACH_PROMPT]["textures"] == {"voice x4": 7, "instrument + voice x4": 1}
    markdown = (out / "report.md").read_text()
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG" and "| usable | 100.0% |" in markdown
    assert "| Baroque / Bach, Johann Sebastian / Choral | 8 | 100% | 100% | voice x4 7, instrument + voice x4 1 |" in markdown and "texture adherence 100%" in summary
    missing = subprocess.run([sys.executable, str(REPO_ROOT / "clamp2" / "evaluate.py"), "--generated_dir",
                              str(tmp_path / "nothing"), "--reference_dir", str(reference)],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no such folder of pieces")


def test_the_script_on_a_fresh_clone_skips_what_it_lacks_and_refuses_what_it_needs(bach, tmp_path):
    """No published CLaMP 2 weights at the default place and no style set: the report still comes,
    with a note for each skipped section; no reference folder, or weights named but missing: one error line."""
    generated, reference = write(tmp_path / "generated", bach[:4]), write(tmp_path / "reference", bach[4:8])
    command = [sys.executable, str(REPO_ROOT / "clamp2" / "evaluate.py"), "--generated_dir", str(generated),
               "--eval_output_dir", str(tmp_path / "report")]
    done = subprocess.run(command + ["--reference_dir", str(reference)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "note: no CLaMP 2 weights at " in done.stdout and "texture adherence 100%" in done.stdout
    notes = json.loads((tmp_path / "report" / "report.json").read_text())["notes"]
    assert notes == ["CLaMP 2 score, FMD, critic, novelty and composer classifier skipped: no clamp2_weights_path"]
    no_reference = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert no_reference.returncode == 2 and no_reference.stderr.startswith("error: --reference_dir is required")
    named = subprocess.run(command + ["--reference_dir", str(reference), "--clamp2_weights_path", str(tmp_path / "m3.pth")],
                           capture_output=True, text=True, timeout=600)
    assert named.returncode == 2 and named.stderr.strip() == f"error: CLaMP 2 weights not found: {tmp_path / 'm3.pth'} (--clamp2_weights_path)"


def test_validity_counts_each_stage_and_its_reasons(bach):
    # a barline in the middle of one bar of voice 2: that voice gets one measure more
    lines = bach[0].split("\n")
    row = next(i for i, line in enumerate(lines) if re.search(r"\[V:2\]\S+ ", line))
    lines[row] = re.sub(r"(\[V:2\]\S+) ", r"\1| ", lines[row], count=1)
    shorter_voice = "\n".join(lines)
    piece = evaluation.EvaluatedPiece
    pieces = [piece("real", bach[0]), piece("garbage", "<<<>>> ||| ]]]] [[[\n"), piece("cut", bach[1], finished=False),
              piece("short", shorter_voice), piece("tiny", "\n".join(bach[2].split("\n")[:14]) + "\n")]
    result = evaluation.validity(pieces)
    assert result["pieces"] == 5 and result["finished"] == 0.8
    assert result["converted"] == 0.6 and result["parsed"] == 0.6 and result["usable"] == 0.2
    assert result["reasons"] == {"no notes": 1, "not finished": 1, "parts differ in measure count": 1,
                                 "fewer than 4 measures": 1}


def test_sections_without_enough_pieces_are_skipped_not_crashed():
    result = evaluation.style_classifier(np.zeros((3, 4)), ["A", "B", "C"])  # one piece per composer
    assert result["classes"] == 0 and np.isnan(result["accuracy"])


def test_preferences_by_composer_choose_the_prompts_style_within_each_prompt(bach, palestrina, tmp_path):
    """RL/data.py --rank_by composer: pieces written for the Bach prompt that are Bach chorales are
    chosen over Palestrina pieces and broken ones written for it; pairs stay within a prompt."""
    as_bach = lambda text: "".join(f"{line}\n" for line in STYLES["bach"]) + text.split("%Choral\n", 1)[1]  # noqa: E731
    generated = tmp_path / "generated"
    write(generated, bach[12:16], "bach")
    write(generated, [as_bach(t) for t in palestrina[12:16]], "palestrina")
    write(generated, [as_bach(scrambled(t, random.Random(0))) for t in bach[8:10]], "broken")
    write(generated, palestrina[8:10], "other")  # another prompt: its own group
    style = write(tmp_path / "style", bach[:8] + palestrina[:8])
    out = tmp_path / "preferences.json"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "RL" / "data.py"), "--rank_by", "composer",
                           "--generated_original_dir", str(generated), "--style_train_dir", str(style),
                           "--clamp2_weights_path", str(TINY_CLAMP2), "--portion", "0.4", "--output_path", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "12 pieces of 2 prompts (10 usable)" in done.stdout
    groups = {g["name"]: g for g in json.loads(out.read_text())["groups"]}
    stems = lambda paths: [Path(p).stem[:-2] for p in paths]  # noqa: E731
    bach_group = groups["Baroque|Bach, Johann Sebastian|Choral"]
    assert stems(bach_group["chosen"]).count("bach") >= 3 and len(bach_group["chosen"]) == 4
    assert sorted(stems(bach_group["rejected"]))[:2] == ["broken", "broken"]
    assert "bach" not in stems(bach_group["rejected"])
    assert "Renaissance|Palestrina, Giovanni Pierluigi da|Choral" not in groups  # two usable pieces, nothing to reject
    bad = subprocess.run([sys.executable, str(REPO_ROOT / "RL" / "data.py"), "--rank_by", "compsoer"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "rank_by must be clamp2 or composer" in bad.stderr


@pytest.mark.parametrize("composers", [2, 3])
def test_composer_log_probabilities_are_the_classifiers_own(composers):
    rng = np.random.default_rng(0)
    labels = [f"c{i % composers}" for i in range(60)]
    x = rng.normal(size=(60, 5)) + np.array([[3.0 * int(label[1:])] + [0.0] * 4 for label in labels])
    model = evaluation.composer_classifier(x, labels)
    asked = ["c1", "c0", "nobody"] + ["c2"] * (composers == 3)
    log_p, rank = evaluation.composer_log_probabilities(model, x[:len(asked)], asked)
    probabilities = model.predict_proba(x[:len(asked)])
    expected = [probabilities[i, list(model.classes_).index(c)] if c in model.classes_ else np.nan for i, c in enumerate(asked)]
    assert np.allclose(np.exp(log_p), expected, equal_nan=True) and np.isnan(log_p[2])
    order = np.argsort(-probabilities, axis=1)
    expected_rank = [list(model.classes_[order[i]]).index(c) if c in model.classes_ else np.nan for i, c in enumerate(asked)]
    assert np.allclose(rank, expected_rank, equal_nan=True)


def test_texture_adherence_per_prompt_with_the_real_ceiling():
    choir = '%%score 1 2 3 4\nV:1 nm="Soprano"\nV:2 nm="Alto"\nV:3 nm="Tenor"\nV:4 nm="Bass"\n'
    piano = '%%score { 1 | 2 }\nV:1 nm="Piano"\nV:2\n'
    bach, chopin = ("Baroque", "Bach, Johann Sebastian", "Choral"), ("Romantic", "Chopin, Frederic", "Keyboard")
    piece = evaluation.EvaluatedPiece
    generated = [piece("a", choir, prompt=bach), piece("b", piano, prompt=bach),
                 piece("c", choir, prompt=chopin + ("Clamferina", "Choral")),  # % lines the model wrote on
                 piece("d", piano, prompt=chopin),
                 piece("e", choir, prompt=("Romantic", "Brahms, Johannes", "Orchestral")),  # no rule
                 piece("f", choir)]  # no prompt lines
    real = [piece("r", choir, prompt=bach), piece("s", choir, prompt=chopin)]
    result = evaluation.texture_adherence(generated, real)
    assert result["pieces"] == 4 and result["adherence"] == 0.5
    assert result["real_pieces"] == 2 and result["real_adherence"] == 0.5
    assert result["by_prompt"] == {
        "Baroque|Bach, Johann Sebastian|Choral": {"pieces": 2, "rated": 2, "adherence": 0.5, "real_adherence": 1.0,
                                                 "textures": {"voice x4": 1, "keyboard": 1}},
        "Romantic|Brahms, Johannes|Orchestral": {"pieces": 1, "rated": 0, "adherence": pytest.approx(float("nan"), nan_ok=True),
                                                "real_adherence": pytest.approx(float("nan"), nan_ok=True),
                                                "textures": {"voice x4": 1}},
        "Romantic|Chopin, Frederic|Keyboard": {"pieces": 2, "rated": 2, "adherence": 0.5, "real_adherence": 0.0,
                                              "textures": {"voice x4": 1, "keyboard": 1}}}
