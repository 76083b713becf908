"""The flat baselines (notagen.baselines): same data, same training stage, same engine events, same DPOP.

Data: the 3 real pieces of tests/vectors/data_pipeline.json (conftest.write_corpus), with prompt lines.
"""
from __future__ import annotations

import json

import pytest
import torch

from conftest import CORPUS_PROMPT, REPO_ROOT, load_vector, write_corpus
from notagen import Patchilizer
from notagen.baselines import (FLAT_TYPES, FlatConfig, build_flat_model, collate_flat, flat_ids,
                               flat_parameter_count, matched_config, notagen_parameter_count)
from notagen.checkpoint import load_model
from notagen.config import BOS_ID, EOS_ID, resolve_config
from notagen.data import NotaGenDataset, collate_patches
from notagen.generation import GenerationSettings, Prompt, engine_for
from notagen.rl import run_dpo_training
from notagen.settings import parse_settings
from notagen.training.stages import run_notagen_training

CHORALE = Prompt.from_triple("Baroque", "Bach, Johann Sebastian", "Choral")


def tiny(model_type: str) -> FlatConfig:
    return matched_config(model_type, "tiny").with_(patch_length=64)


def corpus_batch(corpus, patch_length: int = 64) -> dict:
    data = NotaGenDataset(corpus / "augmented_train.jsonl", patch_length=patch_length, require_prompt_lines=True)
    return collate_patches([data[i] for i in range(len(data))])


def test_the_flat_stream_is_the_window_text_between_bos_and_eos():
    text = "X:1\nL:1/8\n[V:1]abc|def|\n[V:1]g4|]\n"
    patches = Patchilizer(16).encode_train(text, 64)
    expected = "X:1\nL:1/8\n[r:0/1][V:1]abc|def|\n[r:1/0][V:1]g4|]\n"
    assert flat_ids(patches) == [BOS_ID, *map(ord, expected), EOS_ID]
    # a cut window (no EOS patch) ends with its last character; padding rows of a batch are PAD
    cut = torch.tensor(patches[:-1] + [[0] * 16]).reshape(1, -1)
    ids = collate_flat(cut, torch.tensor([[1] * (len(patches) - 1) + [0]]))
    assert ids[0].tolist() == [BOS_ID, *map(ord, expected)]


@pytest.mark.parametrize("model_type", FLAT_TYPES)
def test_each_preset_matches_notagens_parameter_count(model_type):
    built = build_flat_model(matched_config(model_type, "tiny"))
    assert sum(p.numel() for p in built.parameters()) == flat_parameter_count(built.config)
    for preset in ("tiny", "small", "medium", "large"):
        ours, theirs = flat_parameter_count(matched_config(model_type, preset)), notagen_parameter_count(resolve_config(preset))
        assert abs(ours - theirs) / theirs < 0.05, (preset, ours, theirs)
    with torch.device("meta"):
        from notagen.model import NotaGenLMHeadModel
        assert notagen_parameter_count(resolve_config("small")) == sum(
            p.numel() for p in NotaGenLMHeadModel(resolve_config("small")).parameters())


def test_the_flat_gpt2_gives_the_same_sequence_logp_batched_and_one_at_a_time(tmp_path):
    torch.manual_seed(0)
    model = build_flat_model(tiny("abc_gpt2")).eval()
    batch = corpus_batch(write_corpus(tmp_path / "corpus", prompts=True, eval_piece=0))
    together = model.sequence_logp(batch["patches"], batch["masks"])
    alone = torch.cat([model.sequence_logp(batch["patches"][i:i + 1], batch["masks"][i:i + 1])
                       for i in range(len(together))])
    assert together.shape == (3,) and (together < -100).all()
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-2)
    # the mean loss is the summed log-prob over the targets
    output = model(batch["patches"], batch["masks"])
    torch.testing.assert_close(output.loss * output.num_targets, -together.sum(), rtol=1e-4, atol=1e-2)
    assert int(model.num_targets(batch["patches"], batch["masks"]).sum()) == output.num_targets  # no forward pass


@pytest.mark.parametrize("model_type", FLAT_TYPES)
def test_generation_rows_give_the_full_forward_pass_logits(model_type):
    torch.manual_seed(0)
    model = build_flat_model(tiny(model_type)).eval()
    streams = [[BOS_ID, *map(ord, "%Baroque\n%Bach\n")], [BOS_ID, *map(ord, "%x\n")], [BOS_ID, 65, 66]]
    with torch.inference_mode():
        rows = model.generation_rows(3)
        first = rows.prefill([0, 1, 2], streams)
        stepped = rows.advance([67, 68], [0, 2])  # rows 0 and 2 move on, row 1 waits
        again = rows.prefill([1], [streams[1] + [69, 70]])  # row 1 starts over (a rewound line)
        for row, stream, got in [(0, streams[0], first[0]), (1, streams[1], first[1]), (0, streams[0] + [67], stepped[0]),
                                 (2, streams[2] + [68], stepped[1]), (1, streams[1] + [69, 70], again[0])]:
            full = model.logits(torch.tensor([stream]))[0, -1]
            torch.testing.assert_close(got, full, rtol=1e-4, atol=1e-4, msg=f"row {row}")


@pytest.mark.parametrize("model_type", FLAT_TYPES)
def test_each_baseline_trains_saves_reloads_generates_and_takes_dpop_steps(tmp_path, model_type):
    corpus = write_corpus(tmp_path / "corpus", prompts=True, eval_piece=1)
    out = tmp_path / "run"
    settings = parse_settings(REPO_ROOT / "pretrain" / "config.py", [
        "--model", model_type, "--preset", "tiny", "--patch_length", "64", "--data_train_index_path",
        str(corpus / "augmented_train.jsonl"), "--data_eval_index_path", str(corpus / "augmented_eval.jsonl"),
        "--batch_size", "1", "--learning_rate", "3e-3", "--warmup_steps", "2", "--lr_schedule", "constant",
        "--num_epochs", "14", "--max_steps", "40", "--log_every_steps", "1", "--output_dir", str(out),
        "--progress_bar", "false"])
    result = run_notagen_training(settings, "pretrain")
    [steps_file] = out.glob(f"logs_{model_type}_pretrain_ctx_1024_*.steps.jsonl")
    losses = [json.loads(line)["loss"] for line in steps_file.read_text().splitlines()]
    assert len(losses) == 40 and sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5

    # the weights file names its type; it reloads as the same model
    [weights] = out.glob(f"weights_{model_type}_pretrain_ctx_1024_*.pth")
    assert result.global_step == 40 and result.weights_path == weights
    model = load_model(weights)
    assert type(model).__name__ == type(build_flat_model(tiny(model_type))).__name__
    assert model.config == tiny(model_type)

    # a piece through the engine's events, the bar check on
    events = list(engine_for(model).stream([CHORALE], GenerationSettings.published(seed=1, max_chars=500, bar_retries=2,
                                                                         temperature=1.0)))
    piece = events[-1].result
    assert piece.text.startswith(CORPUS_PROMPT) and "".join(e.text for e in events) == piece.text
    assert piece.patches > 3 and len(piece.text) > len(CORPUS_PROMPT) + 40
    assert piece.status == "finished" or piece.reason in ("max_chars", "metadata_overflow")

    # DPOP: the real pieces preferred over scrambled copies
    chosen, rejected = [], []
    for i, path in enumerate(sorted((corpus / "augmented" / "C").glob("*.abc"))):
        text = path.read_text()
        (tmp_path / f"good{i}.abc").write_text(text)
        (tmp_path / f"bad{i}.abc").write_text("".join(sorted(text.splitlines(keepends=True))))
        chosen.append(str(tmp_path / f"good{i}.abc"))
        rejected.append(str(tmp_path / f"bad{i}.abc"))
    preferences = tmp_path / "preferences.json"
    preferences.write_text(json.dumps({"chosen": chosen, "rejected": rejected}))
    from test_rl_train import margin, settings_for

    dpo = run_dpo_training(settings_for(tmp_path, preferences, weights_path=str(weights), optimization_steps=4,
                                        learning_rate=1e-3))
    assert dpo.name.startswith(f"weights_{model_type}_test-RL1_beta_0.1_lambda_10.0_ctx_1024_")
    assert margin(load_model(dpo), chosen, rejected) > margin(model, chosen, rejected)


@pytest.mark.parametrize("model_type", FLAT_TYPES)
def test_pieces_do_not_depend_on_the_batch_through_rebuilds_and_rewinds(model_type):
    """A chorale to continue, a context of 8 chunks: rebuilds and bar-check rewinds happen often."""
    torch.manual_seed(0)
    model = build_flat_model(tiny(model_type).with_(patch_length=8)).eval()
    # random weights, steered: lines end often (the bar check rejects them) and EOS never comes
    head = model.head if model_type == "folk_rnn" else torch.nn.Linear(128, 128)
    if model_type == "abc_gpt2":
        head.weight.data.copy_(model.base.transformer.wte.weight.data)
        model.base.lm_head = head
    head.bias.data[EOS_ID] = -50.0
    head.bias.data[ord("\n")] += 3.0
    text = load_vector("data_pipeline.json")["items"][0]["augmented"]["C"]
    prompt = Prompt.from_abc("".join(text.splitlines(keepends=True)[:12]))
    settings = dict(seed=5, max_chars=len(prompt.prompt_text) + 400, bar_retries=2, top_k=0, top_p=1.0)
    one = engine_for(model).generate([prompt] * 3, GenerationSettings.published(batch_size=1, **settings))
    together = engine_for(model).generate([prompt] * 3, GenerationSettings.published(batch_size=2, **settings))
    assert [r.text for r in one] == [r.text for r in together]
    assert len({r.text for r in one}) == 3  # each piece its own random stream
    assert any(r.stream_events for r in one) and any(r.resampled_lines for r in one)
    assert all(r.text.startswith(prompt.prompt_text[:200]) for r in one)


def test_a_loaded_flat_gpt2_keeps_its_output_embedding_tied(tmp_path):
    from notagen.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "w.pth", build_flat_model(tiny("abc_gpt2")))
    base = load_model(tmp_path / "w.pth").base
    assert base.lm_head.weight is base.transformer.wte.weight


def test_the_model_setting_and_the_pretrained_file_must_agree(tmp_path):
    from notagen.checkpoint import save_checkpoint
    from notagen.training.stages import stage_model

    weights = tmp_path / "weights_folk_rnn_x.pth"
    save_checkpoint(weights, build_flat_model(tiny("folk_rnn")))
    settings = parse_settings(REPO_ROOT / "finetune" / "config.py", ["--model", "abc_gpt2"])
    with pytest.raises(ValueError, match="model=abc_gpt2 but .* holds a folk_rnn model"):
        stage_model(settings, weights)
    settings = parse_settings(REPO_ROOT / "finetune" / "config.py", ["--hidden_size", "64"])
    with pytest.raises(ValueError, match=r"hidden_size=64 \(file: 224\)"):
        stage_model(settings, weights)
    with pytest.raises(ValueError, match="patch_num_layers is not a size of a folk_rnn model"):
        stage_model(parse_settings(REPO_ROOT / "finetune" / "config.py", ["--patch_num_layers", "2"]), weights)
    with pytest.raises(ValueError, match="num_layers is not a size of a notagen model"):
        stage_model(parse_settings(REPO_ROOT / "pretrain" / "config.py", ["--num_layers", "2"]), None)
    with pytest.raises(ValueError, match="unknown model 'lstm'"):
        stage_model(parse_settings(REPO_ROOT / "pretrain" / "config.py", ["--model", "lstm"]), None)
    from notagen.training.stages import prepare_for_training
    with pytest.raises(ValueError, match="LoRA adapters .* for NotaGen models"):
        prepare_for_training(load_model(weights), parse_settings(REPO_ROOT / "finetune" / "config.py",
                                                                 ["--lora_rank", "4"]))


def test_the_demo_backend_streams_a_baseline_read_from_its_file(tmp_path):
    from notagen.checkpoint import save_checkpoint
    from notagen.demo.session import DemoBackend, DemoRequest

    torch.manual_seed(0)
    weights = tmp_path / "model" / "weights_abc_gpt2_x.pth"
    weights.parent.mkdir()
    save_checkpoint(weights, build_flat_model(tiny("abc_gpt2")))
    (weights.parent / "prompts.txt").write_text("Baroque|Bach, Johann Sebastian|Choral\n")
    settings = parse_settings(REPO_ROOT / "gradio" / "config.py", [
        "--weights_path", str(weights), "--output_dir", str(tmp_path / "runs"), "--device", "cpu",
        "--synth", "midirenderer", "--max_chars", "300"])
    lines = []
    backend = DemoBackend(settings, log=lines.append)
    assert "abc_gpt2, 4 GPT-2 blocks, hidden 128, context 1024 chars" in lines[0]
    snapshots = list(backend.generate(DemoRequest(prompt_lines=tuple(CORPUS_PROMPT.splitlines()), seed=2, variations=2)))
    last = snapshots[-1]
    assert last.done and len(snapshots) > 2 and last.patches == sum(v.patches for v in last.variations) > 0
    for variation in last.variations:
        assert variation.text.startswith(CORPUS_PROMPT) and variation.status == "failed"  # max_chars: random weights
