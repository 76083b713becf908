"""Checkpoints: round trips, and clear errors for files that are not (or do not fit) the model."""
import os

import pytest
import torch

from conftest import VECTORS
from notagen import CheckpointError, NotaGenConfig, build_model, load_model, save_checkpoint

TINY_PTH = VECTORS / "tiny_notagen.pth"


def test_save_then_load_round_trips_weights_and_config(tmp_path):
    model = build_model(NotaGenConfig(patch_length=32, patch_num_layers=2, char_num_layers=1,
                                      hidden_size=64, num_heads=2))
    save_checkpoint(tmp_path / "w.pth", model, epoch=4)
    loaded = load_model(tmp_path / "w.pth")
    assert loaded.config == model.config  # num_heads=2 is not derivable from shapes: config travels
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.load(tmp_path / "w.pth", weights_only=True)["epoch"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["w.pth"]  # no temp files left behind


def test_published_gpt2_attention_buffers_are_ignored(tmp_path):
    state = torch.load(TINY_PTH, weights_only=True)
    state["model"]["patch_level_decoder.base.h.0.attn.bias"] = torch.ones(1, 1, 64, 64)
    state["model"]["char_level_decoder.base.transformer.h.1.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, tmp_path / "old.pth")
    assert load_model(tmp_path / "old.pth").config.patch_length == 64


def test_wrong_size_names_missing_keys_and_shapes():
    wrong = NotaGenConfig(patch_length=64, patch_num_layers=3, char_num_layers=2, hidden_size=256)
    with pytest.raises(CheckpointError) as error:
        load_model(TINY_PTH, config=wrong)
    message = str(error.value)
    assert "missing keys: patch_level_decoder.base.h.2." in message
    assert "patch_level_decoder.patch_embedding.weight: file (128, 2048) vs model (256, 2048)" in message


def test_truncated_file_is_reported(tmp_path):
    data = TINY_PTH.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(tmp_path / "cut.pth")


def test_random_bytes_are_reported(tmp_path):
    (tmp_path / "noise.pth").write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(tmp_path / "noise.pth")


def test_checkpoint_of_something_else_is_reported(tmp_path):
    torch.save({"optimizer": {"lr": 1.0}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="holds no model weights"):
        load_model(tmp_path / "other.pth")
    torch.save({"model": {"encoder.weight": torch.zeros(2)}}, tmp_path / "m3.pth")
    with pytest.raises(CheckpointError, match="not a NotaGen checkpoint"):
        load_model(tmp_path / "m3.pth")


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_model(tmp_path / "nope.pth")


class _Payload:
    """Unpickling this runs code: it creates a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="not a torch.save archive of plain tensors"):
        load_model(evil)
    assert not marker.exists()


def test_export_keeps_the_weights_and_drops_the_optimizer(tmp_path):
    from notagen.checkpoint import export_weights, read_checkpoint

    model = build_model(NotaGenConfig(patch_length=32, patch_num_layers=2, char_num_layers=1,
                                      hidden_size=64, num_heads=2))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randint(0, 128, (1, 4, 16)), torch.ones(1, 4, dtype=torch.long)).loss.backward()
    optimizer.step()
    save_checkpoint(tmp_path / "train.pth", model, optimizer=optimizer.state_dict(), epoch=3, min_eval_loss=0.5)
    exported = export_weights(tmp_path / "train.pth", tmp_path / "shipped.pth")
    stored = read_checkpoint(exported)
    assert "optimizer" not in stored and stored["epoch"] == 3 and stored["exported_from"] == "train.pth"
    assert exported.stat().st_size < (tmp_path / "train.pth").stat().st_size / 2
    loaded = load_model(exported)
    assert loaded.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_a_checkpoint_folder_loads_as_its_pth_file_does(tmp_path):
    from notagen.checkpoint import save_pretrained
    from notagen.paths import resolve_weights_path

    folder = save_pretrained(TINY_PTH, tmp_path / "tiny", prompts=VECTORS / "README.md")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors", "prompts.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # written beside, renamed whole: no staging left
    assert resolve_weights_path(folder) == folder / "model.safetensors"
    original = load_model(TINY_PTH)
    patches = torch.randint(3, 128, (1, 5, 16))
    for path in (folder, folder / "model.safetensors"):
        loaded = load_model(path)
        assert loaded.config == original.config
        for (name, a), (_, b) in zip(original.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), name
        with torch.no_grad():
            masks = torch.ones(1, 5, dtype=torch.long)
            assert torch.equal(loaded(patches, masks).loss, original(patches, masks).loss)
    assert "notagen.load_model" in (folder / "README.md").read_text()


def test_a_checkpoint_folder_is_never_replaced_unasked_and_a_broken_one_is_named(tmp_path):
    from notagen.checkpoint import save_pretrained

    folder = save_pretrained(TINY_PTH, tmp_path / "tiny")
    before = (folder / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        save_pretrained(TINY_PTH, folder)
    assert (folder / "model.safetensors").read_bytes() == before
    (folder / "model.safetensors").write_bytes(before[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not a readable safetensors file"):
        load_model(folder)
    (folder / "model.safetensors").write_bytes(before)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        load_model(folder)
