"""int8 generation (`--dtype int8`, notagen/quantize.py): every linear layer is int8, int8 logits stay
close to float32 on the tiny checkpoint, the cached engine agrees with the uncached forward in
int8, loading converts block by block from the file, and GPUs are refused.

Tolerances (tiny_notagen.pth, real pieces of data_pipeline.json): int8 against float32 measured a
mean KL of 0.0003-0.0006 nats/char, a mean |logit difference| of 0.035 and the same most probable
char for 99.2-99.9% of chars; the tests allow a mean KL of 0.002, a mean |difference| of 0.06 and 98%.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch

from conftest import CORPUS_PROMPT, REPO_ROOT, VECTORS, load_vector, pipeline_item
from notagen.checkpoint import CheckpointError, load_model
from notagen.config import PAD_ID
from notagen.generation import Engine, KVCache
from notagen.generation.cache import stack_blocks
from notagen.generation.setup import SetupError, resolve_dtype
from notagen.patchilizer import Patchilizer
from notagen.quantize import BLOCK_PRODUCTS, INT8, float_products, quantize_model, random_int8_model

WEIGHTS = VECTORS / load_vector("tiny_notagen.json")["checkpoint"]
MEAN_KL, MEAN_ABS, SAME_TOP = 0.002, 0.06, 0.98  # int8 against float32: see the module docstring


@pytest.fixture(scope="module")
def int8_model():
    return load_model(WEIGHTS, dtype=INT8)


def chorale(patch_length: int, key: str = "C") -> torch.Tensor:
    """The chorale bwv269 with the corpus prompt lines, training-encoded: [N, P]."""
    text = CORPUS_PROMPT + pipeline_item("bach/bwv269.mxl")["augmented"][key]
    return torch.tensor(Patchilizer(16).encode_train(text, patch_length, rng=random.Random(0)))


def closeness(reference: torch.Tensor, other: torch.Tensor, targets: torch.Tensor) -> tuple[float, float, float]:
    """(mean KL(reference || other) nats/char, mean |logit difference|, share of equal top chars)
    over the non-padding targets; logits [M, P, 128], targets [M, P]."""
    kept = targets != PAD_ID
    p, q = torch.log_softmax(reference.double(), -1), torch.log_softmax(other.double(), -1)
    kl = (p.exp() * (p - q)).sum(-1)[kept]
    same = (reference.argmax(-1) == other.argmax(-1))[kept].float()
    return kl.mean().item(), (reference - other).abs()[kept].mean().item(), same.mean().item()


def test_every_linear_layer_of_both_decoders_is_int8(tiny_model, int8_model):
    config = tiny_model.config
    blocks = config.patch_num_layers + config.char_num_layers
    assert len(float_products(tiny_model)) == len(BLOCK_PRODUCTS) * blocks + 1  # Conv1D products + LM head
    assert float_products(int8_model) == []
    int8 = [name for name, module in int8_model.named_modules() if type(module).__name__ == "Linear"
            and module.__module__.startswith("torch.ao.nn.quantized.dynamic")]
    assert len(int8) == len(BLOCK_PRODUCTS) * blocks + 1
    assert "char_level_decoder.base.lm_head" in int8 and "patch_level_decoder.base.h.0.attn.c_attn" in int8
    # the patch embedding (a gather of 16 columns) and the embeddings stay float32
    assert int8_model.patch_level_decoder.patch_embedding.weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in int8_model.parameters())


def test_int8_logits_are_close_to_float32(tiny_model, int8_model):
    for key in ("C", "F#"):
        patches = chorale(tiny_model.config.patch_length, key)[None]  # [1, N, P]
        masks = torch.ones(patches.shape[:2], dtype=torch.long)
        with torch.inference_mode():
            reference, targets, _ = tiny_model._target_logits(patches, masks)
            quantized, _, _ = int8_model._target_logits(patches, masks)
        kl, mean_abs, same_top = closeness(reference, quantized, targets)
        assert kl <= MEAN_KL and mean_abs <= MEAN_ABS and same_top >= SAME_TOP, (key, kl, mean_abs, same_top)
        assert mean_abs > 1e-3  # the products really are int8


@torch.inference_mode()
def cached_logits(model, patches: torch.Tensor) -> torch.Tensor:
    """The engine's caches, teacher-forced one patch and one char at a time (every int8 call one
    row, as in batch-1 generation): patches [N, P] -> the char logits of patches 1.. [N-1, P, 128]."""
    engine = Engine(model)
    size = model.config.patch_size
    patch_cache = KVCache(engine.patch_stack, 1, model.config.patch_length, stack_blocks(engine.patch_stack))
    char_cache = KVCache(engine.char_stack, 1, size + 1, stack_blocks(engine.char_stack))
    wte = engine.char_stack.wte.weight
    feature = patch_cache.prefill([0], engine._embed_patches(patches[:1].tolist())[None], [1])  # [1, hidden]
    logits = []
    for patch in patches[1:]:
        char_cache.reset()
        steps = [engine.lm_head(char_cache.prefill([0], feature[:, None], [1]))]
        steps += [engine.lm_head(char_cache.advance(wte[char][None])) for char in patch[:-1]]
        logits.append(torch.cat(steps))  # [P, 128]
        feature = patch_cache.advance(engine._embed_patches([patch.tolist()]))
    return torch.stack(logits)


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_cached_engine_equals_the_uncached_forward(tiny_model, int8_model, dtype):
    # float32: equal up to float rounding. int8: each int8 call quantizes its input with one scale,
    # and the uncached forward puts a whole piece in one call, so the two differ by quantization
    # noise, held to the int8-against-float32 tolerance
    model = tiny_model if dtype == "float32" else int8_model
    patches = chorale(model.config.patch_length)
    with torch.inference_mode():
        uncached, targets, _ = model._target_logits(patches[None], torch.ones(1, len(patches), dtype=torch.long))
    cached = cached_logits(model, patches)
    kept = targets != PAD_ID
    if dtype == "float32":
        assert torch.allclose(cached[kept], uncached[kept], atol=1e-4)
        return
    kl, mean_abs, same_top = closeness(uncached, cached, targets)
    assert kl <= MEAN_KL and mean_abs <= MEAN_ABS and same_top >= SAME_TOP, (kl, mean_abs, same_top)
    float_cached = cached_logits(tiny_model, patches)
    assert closeness(float_cached, cached, targets)[0] <= MEAN_KL  # and close to float32 as generation runs it


def test_loading_converts_block_by_block_like_quantizing_the_loaded_model(tmp_path, tiny_model, int8_model):
    import copy

    patches = chorale(tiny_model.config.patch_length)[None]
    masks = torch.ones(patches.shape[:2], dtype=torch.long)
    converted = quantize_model(copy.deepcopy(tiny_model))
    legacy = tmp_path / "legacy.pth"  # the pre-zip torch.save format: read whole (no mmap), same model
    torch.save(torch.load(WEIGHTS, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    with torch.inference_mode():
        expected = converted._target_logits(patches, masks)[0]
        assert torch.equal(int8_model._target_logits(patches, masks)[0], expected)
        assert torch.equal(load_model(legacy, dtype=INT8)._target_logits(patches, masks)[0], expected)
    # random weights, block by block: the same structure
    built = random_int8_model(tiny_model.config, seed=0)
    assert float_products(built) == [] and str(built) == str(int8_model)


def test_int8_is_refused_off_the_cpu_and_for_baselines(tmp_path):
    for device in ("cuda", "cuda:1", "mps"):
        with pytest.raises(SetupError, match=r"^dtype int8 is for CPU generation .* use --device cpu"):
            resolve_dtype("int8", torch.device(device))
    assert resolve_dtype("INT8", torch.device("cpu")) is torch.int8
    with pytest.raises(ValueError, match="int8 weights are for CPU generation"):
        load_model(WEIGHTS, device="cuda", dtype=INT8)
    from notagen.baselines.config import FlatConfig
    from notagen.baselines.models import build_flat_model
    from notagen.checkpoint import save_checkpoint

    config = FlatConfig(model_type="abc_gpt2", hidden_size=32, num_layers=1, num_heads=1, patch_length=8)
    save_checkpoint(tmp_path / "flat.pth", build_flat_model(config))
    with pytest.raises(CheckpointError, match="int8 generation is for NotaGen checkpoints"):
        load_model(tmp_path / "flat.pth", dtype=INT8)


def test_inference_script_generates_in_int8_with_the_shipped_checkpoint(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "inference" / "inference.py"), "--dtype", "int8", "--device", "cpu",
         "--num_samples", "1", "--seed", "1", "--max_chars", "400", "--convert", "false", "--stream", "false",
         "--num_threads", "1", "--output_dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "cpu int8" in result.stdout
    (summary_file,) = (tmp_path / "summary").glob("*.json")
    summary = json.loads(summary_file.read_text())
    assert summary["dtype"] == "int8" and summary["settings"]["dtype"] == "int8"
    (piece,) = summary["pieces"]
    assert piece["chars"] > 400 and piece["patches"] > 10
    written = next(iter(piece["files"].values()))
    assert open(written).read().startswith("%")  # the prompt lines, then the generated text


def test_the_demo_generates_in_int8(tmp_path):
    from notagen.demo.session import DemoBackend, DemoRequest
    from notagen.quantize import is_int8
    from notagen.settings import parse_settings

    cfg = parse_settings(REPO_ROOT / "gradio" / "config.py",
                         ["--weights_path", str(WEIGHTS), "--output_dir", str(tmp_path), "--device", "cpu",
                          "--dtype", "int8", "--max_chars", "300"])
    backend = DemoBackend(cfg, log=lambda line: None)
    assert is_int8(backend.model)
    request = DemoRequest(prompt_lines=("%Baroque", "%Bach, Johann Sebastian", "%Choral"), seed=3)
    last = list(backend.generate(request))[-1]
    record = json.loads((last.run_dir / "settings.json").read_text())
    assert record["dtype"] == "int8" and last.variations[0].text.startswith("%Baroque\n")
    assert len(last.variations[0].text) > 300
