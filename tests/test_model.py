"""The model reproduces the published losses and log-probs, and matches every published size."""
import pytest
import torch

from conftest import load_vector
from notagen import PRESETS, build_model
from notagen.model import PatchEmbedding

TINY = load_vector("tiny_notagen.json")

# published parameter counts (model.md): small 110M, medium 244M, large/X 516M
PUBLISHED_PARAMS_M = {"small": 110, "medium": 244, "large": 516, "x": 516}


def published_keys(config):
    """The published state-dict keys and shapes, written out from the spec (not from our model)."""
    h, p = config.hidden_size, config.patch_size
    keys = {"patch_level_decoder.patch_embedding.weight": (h, p * 128),
            "patch_level_decoder.patch_embedding.bias": (h,),
            "patch_level_decoder.base.wte.weight": (1, h),
            "patch_level_decoder.base.wpe.weight": (config.patch_length, h),
            "char_level_decoder.base.transformer.wte.weight": (128, h),
            "char_level_decoder.base.transformer.wpe.weight": (p + 1, h),
            "char_level_decoder.base.lm_head.weight": (128, h)}
    block = {"ln_1.weight": (h,), "ln_1.bias": (h,), "attn.c_attn.weight": (h, 3 * h),
             "attn.c_attn.bias": (3 * h,), "attn.c_proj.weight": (h, h), "attn.c_proj.bias": (h,),
             "ln_2.weight": (h,), "ln_2.bias": (h,), "mlp.c_fc.weight": (h, 4 * h),
             "mlp.c_fc.bias": (4 * h,), "mlp.c_proj.weight": (4 * h, h), "mlp.c_proj.bias": (h,)}
    for prefix, layers in (("patch_level_decoder.base", config.patch_num_layers),
                           ("char_level_decoder.base.transformer", config.char_num_layers)):
        for i in range(layers):
            keys.update({f"{prefix}.h.{i}.{name}": shape for name, shape in block.items()})
        keys[f"{prefix}.ln_f.weight"] = (h,)
        keys[f"{prefix}.ln_f.bias"] = (h,)
    return keys


@pytest.mark.parametrize("preset", ["small", "medium", "large", "x"])
def test_published_presets_have_the_published_keys_and_shapes(preset):
    model = build_model(preset, device="meta")
    assert all(p.is_meta for p in model.parameters())  # nothing allocated
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert state == published_keys(PRESETS[preset])
    params = sum(p.numel() for p in model.parameters())
    assert abs(params / 1e6 - PUBLISHED_PARAMS_M[preset]) / PUBLISHED_PARAMS_M[preset] < 0.02


def test_checkpoint_sizes_are_detected_from_the_file(tiny_model):
    for field, value in TINY["config"].items():
        attribute = "num_heads" if field == "heads" else field
        assert getattr(tiny_model.config, attribute) == value


@pytest.mark.parametrize("index", range(len(TINY["cases"])))
def test_loss_and_sum_logp_match_the_published_model(tiny_model, index):
    case = TINY["cases"][index]
    patches = torch.tensor(case["patches"]).unsqueeze(0)  # [1, N, 16]
    masks = torch.ones(patches.shape[:2], dtype=torch.long)
    with torch.no_grad():
        loss = tiny_model(patches, masks).loss.item()
        logp = tiny_model.sequence_logp(patches, masks).item()
    assert loss == pytest.approx(case["loss"], rel=1e-4)
    assert logp == pytest.approx(case["sum_logp"], rel=1e-4)


def test_padded_batch_gives_each_sequence_its_own_logp(tiny_model):
    sequences = [torch.tensor(c["patches"]) for c in TINY["cases"]]
    longest = max(len(s) for s in sequences)
    patches = torch.zeros(len(sequences), longest, 16, dtype=torch.long)
    masks = torch.zeros(len(sequences), longest, dtype=torch.long)
    for i, sequence in enumerate(sequences):
        patches[i, :len(sequence)], masks[i, :len(sequence)] = sequence, 1
    with torch.no_grad():
        logps = tiny_model.sequence_logp(patches, masks)
    expected = torch.tensor([c["sum_logp"] for c in TINY["cases"]])
    torch.testing.assert_close(logps, expected, rtol=1e-4, atol=0)


def test_gathered_patch_embedding_equals_the_one_hot_product():
    torch.manual_seed(0)
    embedding = PatchEmbedding(16, 64)
    patches = torch.randint(0, 128, (3, 7, 16))
    torch.testing.assert_close(embedding(patches), embedding.forward_one_hot(patches), rtol=1e-5, atol=1e-5)


def test_patch_sampling_trains_on_a_subset_and_is_seeded(tiny_model):
    case = TINY["cases"][3]
    patches = torch.tensor(case["patches"]).unsqueeze(0)
    masks = torch.ones(patches.shape[:2], dtype=torch.long)
    with torch.no_grad():
        full = tiny_model(patches, masks)
        first = tiny_model(patches, masks, patch_sample=5, generator=torch.Generator().manual_seed(3))
        again = tiny_model(patches, masks, patch_sample=5, generator=torch.Generator().manual_seed(3))
    assert first.num_targets < full.num_targets
    assert first.loss.item() == again.loss.item()
