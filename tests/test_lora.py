"""LoRA adapters and gradient checkpointing (notagen.lora) in fine-tuning and DPOP."""
import json

import pytest
import torch

from conftest import REPO_ROOT, VECTORS, write_corpus
from notagen import load_model
from notagen.checkpoint import read_checkpoint
from notagen.lora import (LoraSettings, add_lora, adapters_disabled, enable_gradient_checkpointing,
                          load_adapter_state, merged_state_dict)
from notagen.settings import parse_settings
from notagen.training.stages import run_notagen_training
from notagen.training import adapter_path

TINY = VECTORS / "tiny_notagen.pth"


def finetune_args(corpus, output, *extra) -> list[str]:
    return ["--pretrained_path", str(TINY), "--data_train_index_path", str(corpus / "augmented_train.jsonl"),
            "--data_eval_index_path", "", "--output_dir", str(output), "--num_epochs", "3", "--batch_size", "1",
            "--learning_rate", "1e-3", "--warmup_steps", "0", "--log_every_steps", "1", "--progress_bar", "false",
            "--cpu", "true", "--num_threads", "1", "--lora_rank", "4", "--save_every_steps", "2", "--key_mode",
            "original", "--patch_stream", "false", *extra]


def finetune_settings(tmp_path, corpus, output, *extra):
    return parse_settings(REPO_ROOT / "finetune" / "config.py", finetune_args(corpus, output, *extra))


def step_losses(result) -> list[float]:
    lines = result.log_path.with_suffix(".steps.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def logits(model, patches, masks) -> torch.Tensor:
    return model._target_logits(patches, masks)[0]  # [patches, 16, 128]


def sample_batch(model):
    torch.manual_seed(0)
    patches = torch.randint(3, 128, (2, 12, model.config.patch_size))
    return patches, torch.ones(2, 12, dtype=torch.long)


def test_lora_trains_adapters_only_and_saves_a_merged_file_that_inference_reads(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", prompts=True, eval_piece=0)
    result = run_notagen_training(finetune_settings(tmp_path, corpus, tmp_path / "out"), stage="finetune")
    losses = step_losses(result)
    assert len(losses) == 9 and sum(losses[-3:]) < sum(losses[:3])  # the same 3 pieces each epoch: loss falls

    base, merged = load_model(TINY), load_model(result.weights_path)  # a published-layout file
    saved = read_checkpoint(result.weights_path)
    assert saved["lora"]["rank"] == 4 and not any("lora_" in key for key in saved["model"])
    changed = {k for k, v in merged.state_dict().items() if not torch.equal(v, base.state_dict()[k])}
    adapted = ("c_attn.weight", "c_proj.weight", "c_fc.weight")
    assert changed and all(key.endswith(adapted) for key in changed)  # norms, embeddings, LM head untouched

    # the merged weights give the adapted model's logits: base + adapters
    adapter = read_checkpoint(adapter_path(result.weights_path))
    assert adapter["adapter_only"] and all("lora_" in key for key in adapter["model"])
    adapted_model = add_lora(load_model(TINY), LoraSettings(rank=4))
    load_adapter_state(adapted_model, adapter["model"])
    patches, masks = sample_batch(base)
    with torch.no_grad():
        expected = logits(adapted_model.eval(), patches, masks)
        got = logits(merged.eval(), patches, masks)
        with adapters_disabled(adapted_model):
            assert torch.allclose(logits(adapted_model, patches, masks), logits(base.eval(), patches, masks))
    assert (expected - got).abs().max() < 1e-5

    # inference reads it like any other checkpoint
    from notagen.generation import run_inference
    cfg = parse_settings(REPO_ROOT / "inference" / "config.py", [
        "--inference_weights_path", str(result.weights_path), "--prompt", "Baroque|Bach, Johann Sebastian|Choral",
        "--num_samples", "1", "--max_chars", "400", "--seed", "0", "--output_dir", str(tmp_path / "gen"),
        "--convert", "false", "--stream", "false", "--device", "cpu"])
    assert len(run_inference(cfg, log=lambda *_: None)["pieces"]) == 1


def test_a_killed_adapter_run_resumes_exactly(tmp_path):
    """kill -9 during a LoRA fine-tuning run, then --load_from_checkpoint (the resume file holds
    the adapters alone): the same step losses and weights as an uninterrupted run."""
    import subprocess
    import sys

    from test_training_runs import env, run_and_kill

    corpus = write_corpus(tmp_path / "corpus", prompts=True, eval_piece=0)
    script = REPO_ROOT / "finetune" / "train-gen.py"

    def command(output, *extra):
        return [sys.executable, str(script), *[str(a) for a in finetune_args(corpus, output)], *extra]

    whole = subprocess.run(command(tmp_path / "whole"), env=env(), capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed_at = run_and_kill(command(tmp_path / "cut"), tmp_path / "cut", tmp_path, at_step=4)
    assert 4 <= killed_at < 9
    [resume] = (tmp_path / "cut").glob("resume_*.pth")
    checkpoint = read_checkpoint(resume)
    assert checkpoint["adapter_only"] and all("lora_" in key for key in checkpoint["model"])
    assert resume.stat().st_size < TINY.stat().st_size / 2  # no copy of the base weights
    rest = subprocess.run(command(tmp_path / "cut", "--load_from_checkpoint", "true"), env=env(),
                          capture_output=True, text=True, timeout=300)
    assert rest.returncode == 0, rest.stderr[-3000:]
    losses = [[json.loads(line)["loss"] for line in next(folder.glob("*.steps.jsonl")).read_text().splitlines()]
              for folder in (tmp_path / "whole", tmp_path / "cut")]
    assert len(losses[1]) == 9 and losses[1] == pytest.approx(losses[0], abs=1e-6)
    a, b = (read_checkpoint(next(folder.glob("weights_*.pth")))["model"] for folder in (tmp_path / "whole", tmp_path / "cut"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def saved_activations(model, patches, masks) -> tuple[int, dict]:
    """(elements autograd keeps for the backward pass, gradients) of one step, dropout seeded."""
    kept = [0]

    def pack(tensor):
        kept[0] += tensor.numel()
        return tensor

    model.zero_grad()
    torch.manual_seed(1)  # the same dropout masks: recomputation replays the RNG state
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(patches, masks).loss
    loss.backward()
    return kept[0], {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_keeps_fewer_activations_and_gives_the_same_gradients(tmp_path):
    model = load_model(TINY).train()
    patches, masks = sample_batch(model)
    kept_plain, plain = saved_activations(model, patches, masks)
    enable_gradient_checkpointing(model)
    kept_checkpointed, checkpointed = saved_activations(model, patches, masks)
    assert kept_checkpointed < kept_plain / 4  # blocks keep only their inputs
    for name, grad in plain.items():
        assert torch.allclose(grad, checkpointed[name], atol=1e-5), name


def test_dpop_with_adapters_keeps_the_reference_and_moves_the_policy(tmp_path):
    from notagen.rl import run_dpo_training
    from test_rl_train import settings_for, write_pieces

    chosen, rejected = write_pieces(tmp_path)
    (tmp_path / "p.json").write_text(json.dumps({"chosen": chosen, "rejected": rejected}))
    settings = settings_for(tmp_path, tmp_path / "p.json", lora_rank=4, lora_alpha=8.0, lora_dropout=0.0,
                            lora_targets="c_attn,c_proj,c_fc", gradient_checkpointing=True, learning_rate=1e-3)
    weights = run_dpo_training(settings)
    base = load_model(TINY).eval()
    policy = add_lora(load_model(TINY), LoraSettings(rank=4, alpha=8.0))
    load_adapter_state(policy, read_checkpoint(adapter_path(weights))["model"])
    policy.eval()
    patches, masks = sample_batch(base)
    with torch.no_grad():
        reference = logits(base, patches, masks)
        with adapters_disabled(policy):
            assert torch.equal(logits(policy, patches, masks), reference)  # the reference did not move
        assert (logits(policy, patches, masks) - reference).abs().max() > 1e-4  # the policy did
        merged = load_model(weights).eval()
        assert (logits(merged, patches, masks) - logits(policy, patches, masks)).abs().max() < 1e-5
    assert set(merged_state_dict(policy)) == set(base.state_dict())
