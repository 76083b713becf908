"""Feature extraction: segments, batching across files, folder extraction, failures, process split."""
from pathlib import Path

import numpy as np
import pytest

from conftest import VECTORS, load_vector
from notagen.clamp2 import (M3Patchilizer, extract_feature, extract_features_batched, extract_folder,
                            load_clamp2_music)
from notagen.clamp2.features import segment
from notagen.clamp2.patchilizer import drop_comment_lines, split_bars

CASES = load_vector("m3_clamp2.json")["cases"]




@pytest.fixture(scope="module")
def model():
    return load_clamp2_music(VECTORS / "tiny_clamp2.pth")


def short_texts() -> list[str]:
    """Pieces of 7 to ~500 patches (1 to 17 segments of 32): every text but the 5,676-patch one."""
    return [case["text"] for case in CASES if len(case["m3_encode_with_special_patches"]) < 1000]


def test_segments_and_weights():
    patches = np.arange(70)[:, None]  # 70 "patches" of one id
    segments, weights = segment(patches, 32)
    assert [s[:, 0].tolist() for s in segments] == [list(range(0, 32)), list(range(32, 64)), list(range(38, 70))]
    assert weights == [32, 32, 6]
    segments, weights = segment(patches[:64], 32)
    assert [s[0, 0] for s in segments] == [0, 32] and weights == [32, 32]
    segments, weights = segment(patches[:5], 32)
    assert len(segments) == 1 and len(segments[0]) == 5 and weights == [5]


def test_bar_splitting_and_comment_lines_follow_the_published_rules():
    assert split_bars("abc|def|gh\n") == ["abc|", "def|\n"]  # text after the last barline is dropped
    assert split_bars("[V:1]abc\n") == []  # a body line without barline makes no patch
    assert split_bars("|:ab:|cd||\n") == ["|:ab:|", "cd||\n"]
    assert drop_comment_lines("%prompt\n%%score 1\nK:C\n% x\nab|\n") == "%%score 1\nK:C\nab|\n"
    patchilizer = M3Patchilizer(8)
    assert patchilizer.encode("T:a long title\n", add_special_patches=False) == [[1, 84, 58, 97, 32, 108, 111, 110]]


def test_batched_extraction_equals_one_file_at_a_time(model):
    patchilizer = M3Patchilizer(model.config.patch_size)
    texts = short_texts() + ["X:1\nL:1/8\nK:D\n|:d2 fd|]\n"]
    singles = [extract_feature(model, patchilizer, text) for text in texts]
    for batch_size in (3, 64):
        batched = extract_features_batched(model, patchilizer, texts, batch_size=batch_size)
        for one, many in zip(singles, batched):
            assert many.shape == one.shape == (1, model.feature_size)
            np.testing.assert_allclose(many, one, rtol=0, atol=2e-6)
    assert not np.allclose(singles[0], singles[1], atol=1e-3)  # different pieces, different features


def write_pieces(folder: Path, texts: dict[str, str | bytes]) -> None:
    for name, text in texts.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))


def test_folder_extraction_logs_failures_and_finishes_the_rest(model, tmp_path, caplog):
    small = [case["text"] for case in CASES if len(case["m3_encode_with_special_patches"]) < 200]
    texts = dict(zip(["a.abc", "sub/b.abc", "sub/deeper/c.abc"], small))
    texts["broken.abc"] = b"X:1\nK:C\n\xff\xfe not utf-8 |\n"
    texts["notes.txt"] = "not an .abc file"
    write_pieces(tmp_path / "in", texts)
    patchilizer = M3Patchilizer(model.config.patch_size)
    summary = extract_folder(model, patchilizer, tmp_path / "in", tmp_path / "out", batch_size=2, progress=False)
    assert summary.written == 3 and summary.skipped == 0
    assert list(summary.failed) == [str(tmp_path / "in" / "broken.abc")]
    assert "broken.abc" in caplog.text and "UnicodeDecodeError" in caplog.text
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*"))
    assert written == ["a.npy", "sub", "sub/b.npy", "sub/deeper", "sub/deeper/c.npy"]  # no temp files left
    for name in ["a", "sub/b", "sub/deeper/c"]:
        expected = extract_feature(model, patchilizer, texts[name + ".abc"])
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"{name}.npy"), expected, atol=2e-6)


def test_processes_split_the_files_without_overlap(model, tmp_path):
    texts = {f"p{i}.abc": f"X:{i}\nL:1/8\nK:C\n|:{'CDEF' * (i + 1)}:|\n" for i in range(7)}
    write_pieces(tmp_path / "in", texts)
    (tmp_path / "out").mkdir()
    np.save(tmp_path / "out" / "p3.npy", np.zeros((1, 128), np.float32))  # finished by an earlier run
    patchilizer = M3Patchilizer(model.config.patch_size)
    summaries = [extract_folder(model, patchilizer, tmp_path / "in", tmp_path / "out", process_index=rank,
                                num_processes=3, progress=False) for rank in range(3)]
    # sorted p0..p6 dealt out round robin: rank 0 gets p0 p3 p6, and p3 is already done
    assert [s.written for s in summaries] == [2, 2, 2] and [s.skipped for s in summaries] == [1, 0, 0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"p{i}.npy" for i in range(7))
    assert not np.load(tmp_path / "out" / "p3.npy").any()  # the existing output was left alone
