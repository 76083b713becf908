"""M3 encoder, masked-patch pre-training and checkpoint loading."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from types import SimpleNamespace

from conftest import VECTORS, load_vector
from notagen.clamp2 import (M3_PRESETS, M3Config, M3Encoder, M3Model, M3Patchilizer, M3TrainingDataset, collate_m3,
                            extract_feature, load_clamp2_music, load_m3_model, m3_config_from_settings,
                            select_and_corrupt)
from notagen.clamp2.patchilizer import MASK_ID

CLAMP2_CASES = load_vector("m3_clamp2.json")
SMALL = M3Config(patch_size=64, patch_length=16, hidden_size=64, num_layers=2, decoder_layers=1)




def real_abc_texts() -> list[str]:
    """Interleaved ABC of real pieces from the golden vectors."""
    pipeline = load_vector("data_pipeline.json")
    return [case["text"] for case in CLAMP2_CASES["cases"]] + [item["interleaved"] for item in pipeline["items"]]


def test_encoder_embeds_64_char_patches_like_the_one_hot_linear():
    torch.manual_seed(0)
    encoder = M3Encoder(M3Config(patch_length=8, hidden_size=64, num_layers=1))
    patches = torch.randint(0, 128, (2, 5, 64))
    one_hot = F.one_hot(patches, 128).float().reshape(2, 5, 64 * 128)
    embedding = encoder.patch_embedding
    np.testing.assert_allclose(embedding(patches).detach(), F.linear(one_hot, embedding.weight, embedding.bias).detach(),
                               atol=1e-5)


def test_presets_and_published_sizes():
    published = M3_PRESETS["published"]
    assert (published.patch_size, published.patch_length, published.hidden_size, published.num_layers,
            published.num_heads, published.intermediate_size) == (64, 512, 768, 12, 12, 3072)
    tiny = M3_PRESETS["tiny"]
    assert tiny.hidden_size <= 128 and tiny.num_layers <= 3 and tiny.num_heads == tiny.hidden_size // 64


def test_sizes_from_stage_settings():
    config = m3_config_from_settings(SimpleNamespace(preset="tiny", hidden_size=256, num_layers=0, patch_length=64))
    assert (config.hidden_size, config.num_heads, config.intermediate_size) == (256, 4, 1024)
    assert (config.patch_length, config.num_layers) == (64, M3_PRESETS["tiny"].num_layers)


def test_training_windows_depend_only_on_seed_epoch_and_index(tmp_path):
    piece = tmp_path / "long.abc"
    piece.write_text(CLAMP2_CASES["cases"][2]["text"], encoding="utf-8")  # 522 patches
    dataset = M3TrainingDataset([piece], patch_size=64, patch_length=16, seed=3)
    first = dataset[0]
    assert first.shape == (16, 64) and torch.equal(dataset[0], first)
    windows = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        windows.add(tuple(dataset[0].flatten().tolist()))
    assert len(windows) > 1
    whole = M3TrainingDataset([piece], patch_size=64, patch_length=16, random_window=False)[0]
    assert whole[0].tolist() == [1] * 64  # eval windows start at the BOS patch


def make_patches(lengths, patch_size=64, seed=0):
    """Patches like the patchilizer's: BOS, random chars, EOS, padding; plus padded sequences."""
    generator = torch.Generator().manual_seed(seed)
    patches = torch.zeros(len(lengths), max(lengths), patch_size, dtype=torch.long)
    masks = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        for col in range(length):
            chars = int(torch.randint(1, patch_size - 1, (), generator=generator))
            patches[row, col, 0] = 1
            patches[row, col, 1:chars + 1] = torch.randint(32, 127, (chars,), generator=generator)
            if chars + 1 < patch_size:
                patches[row, col, chars + 1] = 2
        masks[row, :length] = 1
    return patches, masks


def test_masking_selects_ceil_45_percent_and_corrupts_as_specified():
    lengths = [200, 57, 3]
    patches, masks = make_patches(lengths)
    corrupted, selected = select_and_corrupt(patches, masks, torch.Generator().manual_seed(1))
    assert selected.sum(dim=1).tolist() == [math.ceil(0.45 * n) for n in lengths]
    assert not (selected & ~masks.bool()).any()  # padding is never selected
    assert torch.equal(corrupted[~selected], patches[~selected])  # unselected patches untouched

    masked = (corrupted == MASK_ID).all(dim=-1) & selected
    unchanged = (corrupted == patches).all(dim=-1) & selected
    shuffled = selected & ~masked & ~unchanged
    for row, col in shuffled.nonzero().tolist():
        before, after = patches[row, col], corrupted[row, col]
        eos = int((before == 2).nonzero()[0]) if (before == 2).any() else len(before)
        assert torch.equal(after[0], before[0]) and torch.equal(after[eos:], before[eos:])
        assert sorted(after[1:eos].tolist()) == sorted(before[1:eos].tolist())
    counts = torch.tensor([masked.sum(), unchanged.sum(), shuffled.sum()], dtype=torch.float)
    shares = counts / selected.sum()
    # 118 selected patches; a shuffle can leave a patch unchanged only if its chars repeat by chance
    assert abs(shares[0] - 0.8) < 0.12 and shares[1] > 0.02 and shares[2] > 0.02

    again = select_and_corrupt(patches, masks, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], corrupted) and torch.equal(again[1], selected)


def test_loss_is_mean_cross_entropy_of_selected_patches_chars():
    torch.manual_seed(0)
    model = M3Model(SMALL).eval()
    patches, masks = make_patches([16, 9])
    with torch.no_grad():
        loss = model(patches, masks, generator=torch.Generator().manual_seed(5)).loss
        # the same computation spelled out over all 64 columns (no trailing-padding cut)
        inputs, selected = select_and_corrupt(patches, masks, torch.Generator().manual_seed(5))
        targets = patches[selected]  # [S, 64]
        states = model.encoder(inputs, masks)[selected]  # [S, hidden]
        decoder_inputs = torch.cat([states.unsqueeze(1), model.decoder.base.transformer.wte(targets[:, 1:-1])], 1)
        logits = model.decoder.base(inputs_embeds=decoder_inputs).logits  # [S, 63, 128]
        log_probs = logits.log_softmax(-1).gather(-1, targets[:, 1:].unsqueeze(-1))[..., 0]
        expected = -log_probs[targets[:, 1:] != 0].mean()
    assert torch.allclose(loss, expected, atol=1e-5)


def test_m3_training_on_real_abc_lowers_the_loss(tmp_path):
    torch.manual_seed(0)
    files = []
    for index, text in enumerate(real_abc_texts()):
        files.append(tmp_path / f"piece{index}.abc")
        files[-1].write_text(text, encoding="utf-8")
    dataset = M3TrainingDataset(files, SMALL.patch_size, SMALL.patch_length, random_window=True)
    model = M3Model(SMALL, decoder_patch_sample=24)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)

    eval_batch = collate_m3([M3TrainingDataset(files, SMALL.patch_size, SMALL.patch_length,
                                               random_window=False)[i] for i in range(len(files))])

    def eval_loss():
        model.eval()
        with torch.no_grad():  # eval mode masks with a fixed seed: the same corruption every time
            return model(**eval_batch).loss.item()

    before = eval_loss()
    for step in range(25):
        model.train()
        batch = collate_m3([dataset[i] for i in torch.randperm(len(dataset))[:4].tolist()])
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = eval_loss()
    assert eval_batch["patches"].shape == (len(files), SMALL.patch_length, SMALL.patch_size)
    assert after < 0.7 * before, (before, after)
    # the frozen, unused BERT parts got no gradient; everything else did
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"encoder.base.embeddings.word_embeddings.weight", "encoder.base.pooler.dense.weight",
                      "encoder.base.pooler.dense.bias"}


def test_bare_m3_checkpoint_loads_for_training_and_for_features(tmp_path):
    torch.manual_seed(0)
    model = M3Model(SMALL)
    path = tmp_path / "m3.pth"
    torch.save({"model": model.state_dict(), "epoch": 3}, path)

    reloaded = load_m3_model(path)
    assert reloaded.config.to_dict() == SMALL.to_dict()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))

    music = load_clamp2_music(path)  # encoder only, no projection: mean-pooled encoder outputs
    assert music.checkpoint_kind == "m3" and music.music_proj is None and music.feature_size == 64
    patchilizer = M3Patchilizer(64)
    text = real_abc_texts()[4]
    feature = extract_feature(music, patchilizer, text)
    patches = torch.tensor(patchilizer.encode(text)).unsqueeze(0)  # one segment: 7 patches < 16
    model.eval()
    with torch.no_grad():
        expected = model.encoder(patches, torch.ones(patches.shape[:2], dtype=torch.long)).mean(dim=1)
    np.testing.assert_allclose(feature, expected.numpy(), atol=1e-5)


def test_loader_explains_what_does_not_fit(tmp_path):
    state = torch.load(VECTORS / "tiny_clamp2.pth", map_location="cpu", weights_only=True)["model"]
    broken = dict(state)
    del broken["music_model.base.encoder.layer.1.output.dense.bias"]
    broken["music_model.extra.weight"] = torch.zeros(1)
    broken["music_proj.bias"] = torch.zeros(7)
    path = tmp_path / "broken.pth"
    torch.save({"model": broken}, path)
    with pytest.raises(ValueError) as error:
        load_clamp2_music(path)
    message = str(error.value)
    assert "1 missing keys: music_model.base.encoder.layer.1.output.dense.bias" in message
    assert "1 unexpected keys: music_model.extra.weight" in message
    assert "music_proj.bias: file (7,) vs model (128,)" in message

    with pytest.raises(ValueError, match="tensors say 2"):  # a config that contradicts the shapes
        load_clamp2_music(VECTORS / "tiny_clamp2.pth", config={"layers": 3})

    not_a_checkpoint = tmp_path / "notes.pth"
    not_a_checkpoint.write_text("X:1\nK:C\nCDEF|\n")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_clamp2_music(not_a_checkpoint)
    torch.save({"model": {"transformer.wte.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="neither a CLaMP 2 music model"):
        load_clamp2_music(tmp_path / "other.pth")
