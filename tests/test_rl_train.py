"""DPOP training (RL/train.py's engine) on the tiny published-format checkpoint."""
import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import VECTORS, load_vector, pipeline_item
from notagen import Patchilizer, load_model
from notagen.io import atomic_write_json
from notagen.rl import (PreferencePairs, collate_pairs, dpop_compute_loss, encode_for_preference, evaluate_pieces,
                        generate_pieces, read_preferences, reference_logps, run_dpo_training, score_summary,
                        target_counts)

TINY_PTH = VECTORS / "tiny_notagen.pth"
GREEDY = load_vector("tiny_notagen.json")["greedy_generation"]


def write_pieces(folder):
    """Two chosen pieces (the model's own greedy music) and two rejected ones (scrambled copies)."""
    chosen, rejected = [], []
    for i, case in enumerate(GREEDY):
        text = case["text"][:1500]
        good, bad = folder / f"good{i}.abc", folder / f"bad{i}.abc"
        good.write_text(text)
        lines = text.splitlines(keepends=True)
        bad.write_text("".join(lines[:6]) + "".join(line[::-1] if "[V:" in line else line for line in lines[6:]))
        chosen.append(str(good))
        rejected.append(str(bad))
    return chosen, rejected


def settings_for(tmp_path, preference_path, **changes):
    values = dict(preference_path=str(preference_path), weights_path=str(TINY_PTH),
                  output_dir=str(tmp_path / "dpo"), tag="test-RL1", beta=0.1, learning_rate=1e-4,
                  optimization_steps=8, batch_size=2, warmup_steps=0, max_grad_norm=1.0, seed=0,
                  save_every_steps=4, log_every_steps=1, load_from_checkpoint=False, mixed_precision="no",
                  report_to="none")
    values.update(changes)
    settings = SimpleNamespace(**values)
    setattr(settings, "lambda", 10.0)
    return settings


def margin(model, chosen, rejected):
    patchilizer = Patchilizer(model.config.patch_size)
    sequences = {p: encode_for_preference(open(p).read(), patchilizer, model.config.patch_length)
                 for p in chosen + rejected}
    logps = reference_logps(model, sequences)
    return sum(logps[c] for c in chosen) / len(chosen) - sum(logps[r] for r in rejected) / len(rejected)


def write_preferences(folder):
    chosen, rejected = write_pieces(folder)
    preference_path = folder / "preferences.json"
    preference_path.write_text(json.dumps({"chosen": chosen, "rejected": rejected}))
    return chosen, rejected, preference_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """8 DPOP steps from the tiny checkpoint, in a folder beside the prompts it knows."""
    tmp = tmp_path_factory.mktemp("dpo")
    chosen, rejected, preference_path = write_preferences(tmp)
    start = tmp / "start"
    start.mkdir()
    (start / TINY_PTH.name).write_bytes(TINY_PTH.read_bytes())
    (start / "prompts.txt").write_text("Baroque_Bach, Johann Sebastian_Choral\n")
    weights = run_dpo_training(settings_for(tmp, preference_path, weights_path=str(start / TINY_PTH.name)))
    return SimpleNamespace(tmp=tmp, start=start, chosen=chosen, rejected=rejected, weights=weights)


def test_dpo_weights_are_named_as_published(trained):
    assert trained.weights.name == ("weights_notagen_test-RL1_beta_0.1_lambda_10.0_p_size_16_p_length_64_p_layers_2"
                                    "_c_layers_2_h_size_128_lr_0.0001_batch_2.pth")


def test_the_policy_changes_and_the_reference_file_does_not(trained):
    after = load_model(trained.weights)  # loadable by inference
    before = load_model(TINY_PTH)
    changed = [n for n, p in after.state_dict().items() if not torch.equal(p, before.state_dict()[n])]
    assert changed, "the policy did not change"
    assert (trained.start / TINY_PTH.name).read_bytes() == TINY_PTH.read_bytes()  # never written


def test_the_trained_policy_prefers_the_chosen_pieces_more(trained):
    assert (margin(load_model(trained.weights), trained.chosen, trained.rejected)
            > margin(load_model(TINY_PTH), trained.chosen, trained.rejected))


def test_the_step_log_has_every_step_with_its_rewards(trained):
    log = trained.weights.with_name(trained.weights.stem.replace("weights", "logs", 1) + ".steps.jsonl")
    steps = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(steps) == 8 and {"reward_margin", "accuracy", "chosen_reward", "rejected_reward"} <= set(steps[0])
    assert steps[-1]["reward_margin"] > steps[0]["reward_margin"]


def test_the_new_weights_know_the_prompts_they_started_with(trained):
    """inference --prompt all reads prompts.txt beside the weights."""
    assert (trained.weights.parent / "prompts.txt").read_text() == (trained.start / "prompts.txt").read_text()


@pytest.fixture(scope="module")
def tiny():
    """The tiny model and three texts of it as training sequences, with their reference log-probs."""
    model = load_model(TINY_PTH)
    patchilizer = Patchilizer(16)
    texts = {"a": GREEDY[0]["text"][:400], "b": GREEDY[1]["text"][:300], "x": GREEDY[0]["text"][:200]}
    sequences = {k: encode_for_preference(t, patchilizer, 64) for k, t in texts.items()}
    return SimpleNamespace(model=model, sequences=sequences, logps=reference_logps(model, sequences, batch_size=2))


def test_reference_logps_in_batches_equal_one_by_one_and_change_nothing(tiny):
    frozen = {n: p.clone() for n, p in tiny.model.state_dict().items()}
    logps = reference_logps(tiny.model, tiny.sequences, batch_size=2)
    single = {k: tiny.model.sequence_logp(v[None], torch.ones(1, len(v))).item() for k, v in tiny.sequences.items()}
    assert logps == pytest.approx(single, rel=1e-5)
    assert all(torch.equal(p, frozen[n]) for n, p in tiny.model.state_dict().items())


def test_target_counts_are_the_chars_each_log_prob_covers(tiny):
    assert target_counts(tiny.model, tiny.sequences) == {
        k: tiny.model(v[None], torch.ones(1, len(v))).num_targets for k, v in tiny.sequences.items()}


def pairs_batch(tiny):
    lengths = target_counts(tiny.model, tiny.sequences)
    pairs = PreferencePairs([("a", "x"), ("b", "x")], tiny.sequences, tiny.logps, lengths)
    return pairs, collate_pairs([pairs[0], pairs[1]])


def test_pairs_carry_reference_logps_and_go_through_one_forward_pass(tiny):
    pairs, batch = pairs_batch(tiny)
    assert len(pairs) == 2 and pairs[1]["ref_chosen"] == tiny.logps["b"] and pairs[1]["ref_rejected"] == tiny.logps["x"]
    assert batch["patches"].shape[0] == 4  # chosen rows then rejected rows, one forward pass
    assert batch["ref_chosen"].tolist() == [tiny.logps["a"], tiny.logps["b"]]


def test_the_loss_is_log_2_while_the_policy_is_the_reference(tiny):
    tiny.model.eval()
    with torch.no_grad():
        loss, metrics = dpop_compute_loss(0.1, 10.0)(tiny.model, pairs_batch(tiny)[1])
    # every margin is 0: -log sigmoid(0) = log 2
    assert loss.item() == pytest.approx(math.log(2), abs=1e-3)
    assert metrics["reward_margin"] == pytest.approx(0.0, abs=1e-4)


def test_the_nll_term_adds_the_chosen_texts_mean_cross_entropy(tiny):
    """Per predicted character: the training loss of each chosen text, weighted."""
    model, batch = tiny.model.eval(), pairs_batch(tiny)[1]
    with torch.no_grad():
        plain, _ = dpop_compute_loss(0.1, 10.0)(model, batch)
        with_nll, _ = dpop_compute_loss(0.1, 10.0, nll_weight=0.5)(model, batch)
        cross_entropy = [model(tiny.sequences[n][None], torch.ones(1, len(tiny.sequences[n]))).loss.item()
                         for n in ("a", "b")]
    assert with_nll.item() - plain.item() == pytest.approx(0.5 * sum(cross_entropy) / 2, rel=1e-4)


def test_preference_file_pairs_every_chosen_with_every_rejected_of_its_group(tmp_path):
    names = {name: tmp_path / f"{name}.abc" for name in ("a", "b", "c", "x", "y")}
    for path in names.values():
        path.write_text("X:1\n")
    a, b, c, x, y = (str(names[k]) for k in "abcxy")
    (tmp_path / "one.json").write_text(json.dumps({"chosen": [a, b], "rejected": [x, y]}))
    assert read_preferences(tmp_path / "one.json") == [(a, x), (a, y), (b, x), (b, y)]
    grouped = {"groups": [{"name": "Bach", "chosen": [a, b], "rejected": [x]},
                          {"name": "Mozart", "chosen": [c], "rejected": [y]}]}
    (tmp_path / "groups.json").write_text(json.dumps(grouped))
    assert read_preferences(tmp_path / "groups.json") == [(a, x), (b, x), (c, y)]  # never c over x
    grouped["groups"][1]["rejected"] = []
    (tmp_path / "groups.json").write_text(json.dumps(grouped))
    with pytest.raises(ValueError, match=r"at least one chosen and one rejected piece \(group Mozart\)"):
        read_preferences(tmp_path / "groups.json")


def test_preference_file_problems_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="preference file not found"):
        read_preferences(tmp_path / "none.json")
    (tmp_path / "p.json").write_text(json.dumps({"chosen": [], "rejected": ["x"]}))
    with pytest.raises(ValueError, match="at least one chosen"):
        read_preferences(tmp_path / "p.json")
    (tmp_path / "p.json").write_text(json.dumps({"chosen": [str(tmp_path / "gone.abc")], "rejected": ["x"]}))
    with pytest.raises(FileNotFoundError, match="are gone"):
        read_preferences(tmp_path / "p.json")


def test_loop_refuses_pieces_generated_by_other_weights(tmp_path):
    """RL/loop.py skips a finished generation step only when the same weights made its pieces."""
    out = tmp_path / "iter_1" / "generated"
    old = tmp_path / "runs" / "old" / "weights.pth"
    atomic_write_json(out / "done.json", {"finished": 3, "weights": str(old)})
    with pytest.raises(RuntimeError, match="holds pieces of .*old/weights.pth, not of .*new.pth"):
        generate_pieces(SimpleNamespace(), tmp_path / "new.pth", out)
    # the same file named another way (relative to the current folder) is the same weights
    originals, interleaved = generate_pieces(SimpleNamespace(), os.path.relpath(old), out)
    assert (originals, interleaved) == (out / "candidates" / "original", out / "candidates" / "interleaved")


def test_score_summary_gives_mean_standard_error_and_count(tmp_path):
    """The loop's table: mean CLaMP 2 score +- its standard error, checked by hand."""
    (tmp_path / "ref").mkdir(), (tmp_path / "gen").mkdir()
    np.save(tmp_path / "ref" / "a.npy", np.array([[1.0, 0.0]]))
    for name, vector in {"x": [1.0, 0.0], "y": [0.0, 1.0], "z": [1.0, 1.0]}.items():  # cosines 1, 0, 1/sqrt(2)
        np.save(tmp_path / "gen" / f"{name}.npy", np.array([vector]))
    summary, each = score_summary(tmp_path / "gen", tmp_path / "ref")
    scores = np.array([1.0, 0.0, 2 ** -0.5])
    assert each == pytest.approx(list(scores))  # the pieces' scores, for the next model's Welch test
    assert summary["pieces"] == 3
    assert summary["mean_score"] == pytest.approx(scores.mean())
    assert summary["sem"] == pytest.approx(np.std(scores, ddof=1) / np.sqrt(3))


def test_each_iteration_row_gains_the_evaluation_columns(tmp_path):
    """RL/loop.py's table: usable (strict), bar alignment, critic AUC, adherence from clamp2/evaluate.py."""
    chorale = pipeline_item("bach/bwv269.mxl")["interleaved"]
    generated, reference = tmp_path / "generated", tmp_path / "reference"
    for folder in (generated, reference):
        folder.mkdir()
    for index in range(3):
        (generated / f"piece{index}.abc").write_text(chorale)
        (reference / f"real{index}.abc").write_text(chorale)
    settings = SimpleNamespace(eval_pieces=2, reference_dir=str(reference), clamp2_weights_path=str(VECTORS / "tiny_clamp2.pth"),
                               style_train_dir="")
    row = evaluate_pieces(settings, generated, tmp_path / "evaluation")
    assert set(row) == {"usable_strict", "bar_alignment", "critic_auc", "adherence_top5", "evaluation"}
    assert row["evaluation"].startswith("evaluation: ") and "of 2 usable" in row["evaluation"]
    assert (tmp_path / "evaluation" / "report.md").is_file()
    again = evaluate_pieces(settings, generated, tmp_path / "evaluation")  # a finished report is reused
    assert json.dumps(again, sort_keys=True) == json.dumps(row, sort_keys=True)
    assert evaluate_pieces(SimpleNamespace(eval_pieces=0), generated, tmp_path / "none") == {}


def test_the_policy_trains_without_dropout_unless_asked(tmp_path):
    """Before its first update the policy is the reference: without dropout its rewards are 0; with
    the published train-mode dropout they are not (the noise that drowns the preference)."""
    *_, preference_path = write_preferences(tmp_path)
    assert load_model(TINY_PTH).config.dropout > 0

    def first_step(disable: bool) -> dict:
        out = tmp_path / f"dpo_{disable}"
        weights = run_dpo_training(settings_for(tmp_path, preference_path, output_dir=str(out), optimization_steps=1,
                                                disable_dropout=disable))
        log = weights.with_name(weights.stem.replace("weights", "logs", 1) + ".steps.jsonl")
        return json.loads(log.read_text().splitlines()[0])

    quiet = first_step(True)
    assert abs(quiet["chosen_reward"]) < 1e-4 and abs(quiet["rejected_reward"]) < 1e-4
    noisy = first_step(False)
    assert abs(noisy["chosen_reward"]) > 1e-2 or abs(noisy["rejected_reward"]) > 1e-2


def test_rl_train_runs_on_its_num_threads(tmp_path):
    """RL/train.py's NUM_THREADS reaches torch (it once went nowhere: DPOP ran on every core)."""
    *_, preference_path = write_preferences(tmp_path)
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    try:
        run_dpo_training(settings_for(tmp_path, preference_path, optimization_steps=1, num_threads=wanted))
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)
