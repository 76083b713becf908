"""The training loop (notagen.training) in one process: schedule, accumulation, fine-tuning setup.

Multi-process and kill/resume runs launch the real stage scripts: tests/test_training_runs.py.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import REPO_ROOT, VECTORS, write_corpus
from notagen.checkpoint import CheckpointError, load_model, read_checkpoint
from notagen.settings import parse_settings
from notagen.training.stages import find_weights_file, prompt_count_lines, run_notagen_training
from notagen.training import TrainConfig, WarmupSchedule, resolve_trackers, train


@pytest.fixture(autouse=True)
def _leave_process_as_found():
    """train() sets torch's thread count and accelerate's process-wide state: undo for other tests."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def test_warmup_schedule_and_file_names():
    constant = WarmupSchedule(4, 100, "constant")
    assert [constant(i) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]  # no lr-0 first step
    cosine = WarmupSchedule(0, 10, "cosine")
    assert cosine(0) == 1.0 and math.isclose(cosine(5), 0.5) and cosine(10) == 0.0
    assert WarmupSchedule(2, 12, "linear")(7) == 0.5
    config = TrainConfig(weights_name="weights_notagen_x_batch_4.pth", output_dir="out")
    assert config.resume_name == "resume_notagen_x_batch_4.pth"
    assert config.log_name == "logs_notagen_x_batch_4.txt"
    assert config.steps_log_path == Path("out/logs_notagen_x_batch_4.steps.jsonl")
    assert all(TrainConfig.describe().values())  # every setting has help text
    with pytest.raises(ValueError):
        TrainConfig(lr_schedule="step")
    assert resolve_trackers("none") == []
    with pytest.raises(ValueError, match="unknown tracker"):
        resolve_trackers("mlflowz")


class Regression(nn.Module):
    """A model of the loop's contract: forward -> object with .loss."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, x, y):
        return type("Out", (), {"loss": ((self.linear(x).squeeze(-1) - y) ** 2).mean()})()


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n=8):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


def test_accumulation_equals_a_bigger_batch_and_loss_goes_down(tmp_path):
    results = {}
    for name, batch, accumulation in (("big", 4, 1), ("accumulated", 2, 2)):
        torch.manual_seed(0)
        model = Regression()
        config = TrainConfig(output_dir=str(tmp_path / name), num_epochs=3, batch_size=batch,
                             accumulation_steps=accumulation, learning_rate=0.05, weight_decay=0.0,
                             max_grad_norm=0.0, log_every_steps=1, progress_bar=False, cpu=True)
        result = train(model, Pairs(), Pairs(4), None, config)
        results[name] = (model.linear.weight.detach().clone(), result)
        assert result.global_step == 6 and result.completed_epochs == 3
        assert result.train_losses[-1] < result.train_losses[0] and result.best_epoch == 3
        checkpoint = read_checkpoint(result.weights_path)  # published layout
        assert {"model", "optimizer", "lr_sched", "epoch", "best_epoch", "min_eval_loss"} <= set(checkpoint)
        assert "progress" in read_checkpoint(result.resume_path)
    assert torch.allclose(results["big"][0], results["accumulated"][0], atol=1e-6)


def test_a_run_stopped_by_max_steps_before_any_epoch_end_leaves_its_weights(tmp_path):
    torch.manual_seed(0)
    model = Regression()
    config = TrainConfig(output_dir=str(tmp_path), num_epochs=5, batch_size=1, max_steps=3,
                         learning_rate=0.05, progress_bar=False, cpu=True)
    result = train(model, Pairs(), None, None, config)
    assert result.stopped_at_max_steps and result.completed_epochs == 0
    saved = read_checkpoint(result.weights_path)["model"]
    assert torch.equal(saved["linear.weight"], model.linear.weight.detach())


def test_load_from_checkpoint_without_a_checkpoint_is_a_clear_error(tmp_path):
    config = TrainConfig(output_dir=str(tmp_path), load_from_checkpoint=True, progress_bar=False, cpu=True)
    with pytest.raises(FileNotFoundError, match="load_from_checkpoint"):
        train(Regression(), Pairs(), None, None, config)


def _finetune_settings(tmp_path, corpus, *extra):
    return parse_settings(REPO_ROOT / "finetune" / "config.py", [
        "--pretrained_path", str(VECTORS / "tiny_notagen.pth"),
        "--data_train_index_path", str(corpus / "augmented_train.jsonl"),
        "--data_eval_index_path", str(corpus / "augmented_eval.jsonl"),
        "--output_dir", str(tmp_path / "out"), "--num_epochs", "2", "--batch_size", "1",
        "--learning_rate", "5e-4", "--warmup_steps", "1", "--log_every_steps", "1",
        "--progress_bar", "false", "--cpu", "true", "--num_threads", "1", *extra])


def test_finetune_from_the_published_checkpoint_takes_sizes_from_the_file(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", prompts=True, eval_piece=2)
    result = run_notagen_training(_finetune_settings(tmp_path, corpus), stage="finetune")
    assert capsys.readouterr().out.startswith(  # what it learns, said at the start
        f"fine-tuning on 3 pieces of {corpus / 'augmented_train.jsonl'}: 1 prompts, 0 pieces without prompt lines\n"
        f"      3  Baroque / Bach, Johann Sebastian / Choral\n")
    name = result.weights_path.name
    assert name == "weights_notagen_finetune_p_size_16_p_length_64_p_layers_2_c_layers_2_h_size_128_lr_0.0005_batch_1.pth"
    steps = [json.loads(line) for line in result.log_path.with_suffix(".steps.jsonl").read_text().splitlines()]
    assert len(steps) == 6
    assert steps[0]["loss"] < 3.0  # started from the trained weights (a fresh model is at ~4.8)
    assert result.eval_losses[1] < result.eval_losses[0]  # the eval set is the same every epoch
    model = load_model(result.weights_path)  # what the inference script does
    assert model.config.patch_length == 64 and model.config.patch_num_layers == 2
    assert (tmp_path / "out" / "prompts.txt").read_text() == "Baroque|Bach, Johann Sebastian|Choral\n"
    saved = read_checkpoint(result.weights_path)
    assert saved["stage"] == "finetune" and saved["pretrained_from"].endswith("tiny_notagen.pth")

    with pytest.raises(ValueError, match="hidden_size=256"):  # a size that does not fit the file
        run_notagen_training(_finetune_settings(tmp_path, corpus, "--hidden_size", "256"), stage="finetune")


def test_the_prompt_counts_fine_tuning_prints():
    counts = {("Romantic", "Lang, Josephine", "Art Song"): 2, (): 3, ("Baroque", "Bach, Johann Sebastian", "Choral"): 5,
              ("Romantic", "Brahms, Johannes", "Art Song"): 2}
    assert prompt_count_lines(counts, "train.jsonl") == [
        "fine-tuning on 12 pieces of train.jsonl: 3 prompts, 3 pieces without prompt lines",
        "      5  Baroque / Bach, Johann Sebastian / Choral",
        "      2  Romantic / Brahms, Johannes / Art Song",
        "      2  Romantic / Lang, Josephine / Art Song"]
    assert prompt_count_lines({(): 4}, "x")[1].startswith("  no piece has prompt lines: the model learns no prompt")


def test_pretrained_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        find_weights_file(tmp_path / "missing.pth")
    for name in ("weights_notagen_a.pth", "weights_notagen_b.pth"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="exactly one"):
        find_weights_file(tmp_path)
    not_a_checkpoint = tmp_path / "other.pth"
    torch.save({"model": {"linear.weight": torch.zeros(2, 2)}}, not_a_checkpoint)
    with pytest.raises(CheckpointError, match="not a NotaGen checkpoint"):
        load_model(find_weights_file(not_a_checkpoint))


def test_max_steps_is_the_horizon_of_the_lr_decay(tmp_path):
    """A run cut by max_steps decays to 0 there, not over num_epochs it will never reach."""
    torch.manual_seed(0)
    config = TrainConfig(output_dir=str(tmp_path), num_epochs=100, batch_size=1, max_steps=6,
                         learning_rate=0.05, lr_schedule="cosine", log_every_steps=1, progress_bar=False, cpu=True)
    train(Regression(), Pairs(), None, None, config)
    logged = [json.loads(line)["lr"] for line in config.steps_log_path.read_text().splitlines()]
    cosine = WarmupSchedule(0, 6, "cosine")
    assert logged == pytest.approx([0.05 * cosine(i) for i in range(6)])  # 0.05, ..., 0.0034


def test_a_run_resumed_with_fewer_steps_per_epoch_ends_that_epoch(tmp_path):
    """Stopped at step 6 of an 8-step epoch, resumed with accumulation 2 (4 steps per epoch): the
    epoch in progress is over, the next one runs, and the run ends (it once looped forever)."""
    torch.manual_seed(0)
    common = dict(output_dir=str(tmp_path), batch_size=1, learning_rate=0.05, progress_bar=False, cpu=True,
                  num_epochs=2)
    first = train(Regression(), Pairs(), None, None, TrainConfig(**common, max_steps=6))
    assert first.stopped_at_max_steps and first.global_step == 6
    again = train(Regression(), Pairs(), None, None,
                  TrainConfig(**common, accumulation_steps=2, load_from_checkpoint=True))
    assert (again.global_step, again.completed_epochs, again.stopped_at_max_steps) == (10, 2, False)
