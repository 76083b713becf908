"""CLaMP-DPO training: DPOP on (chosen, rejected) pairs, on the shared accelerate training loop.

Design choices
- The policy starts from the current weights; the reference is the same weights, frozen, in eval
  mode. Its log-probs never change, so they are computed once per distinct text before training
  (`reference_logps`), on the policy itself before its first step (with LoRA, adapters bypassed):
  DPO costs one model in memory.
- `lora_rank` > 0 trains adapters only (`notagen.lora`); the result is saved merged, with the
  adapter file beside it; `gradient_checkpointing` recomputes blocks in the backward pass.
- Pairs are every chosen x every rejected text (published), or that within each group of the file
  (e.g. one group per prompt). A batch holds B pairs; chosen and
  rejected go through the policy in one forward pass ([2B, N, 16], chosen first).
- Texts longer than the context keep their head (a deterministic cut, so the reference log-probs
  computed once stay valid for every step).
- The loss is `notagen.rl.loss.dpop_loss`; the step log adds reward margins and preference accuracy.
- `disable_dropout` (default, as TRL's DPO does) trains the policy without dropout. A log-prob is
  summed over thousands of characters, and the model's 0.1 dropout lowers it by 14-78 nats
  (spread 8-23 nats a draw) on the shipped model's pieces: the policy then always looks worse than
  the eval-mode reference, DPOP's lambda term fires on every chosen piece and the preference
  signal drowns. The published code trains in train mode (`disable_dropout` false).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..checkpoint import load_model
from ..data import collate_patches
from ..io import atomic_write_text
from ..lora import adapters_disabled
from ..patchilizer import Patchilizer
from ..paths import resolve_weights_path
from ..settings import plain_settings
from ..training import TrainConfig, make_accelerator, save_model_files, train
from ..training.stages import prepare_for_training
from .data import preference_pairs
from .loss import dpop_loss


def read_preferences(path: str | Path) -> list[tuple[str, str]]:
    """The (chosen, rejected) pairs of a preference file, every path checked. The file is the
    published `{"chosen": [paths], "rejected": [paths]}` (every chosen x every rejected), or
    `{"groups": [{"name": ..., "chosen": [...], "rejected": [...]}, ...]}`: pairs only within a
    group, e.g. one group per prompt, so a piece is never preferred to one written for another."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"preference file not found: {path} (make it with RL/data.py)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a preference file (JSON with chosen and rejected lists): {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a preference file: expected a JSON object with chosen and rejected lists")
    groups = data["groups"] if "groups" in data else [data]
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise ValueError(f"{path}: groups must be a list of objects with chosen and rejected lists")
    pairs = []
    for number, group in enumerate(groups, 1):
        chosen, rejected = list(group.get("chosen", [])), list(group.get("rejected", []))
        where = f" (group {group.get('name', number)})" if "groups" in data else ""
        if not chosen or not rejected:
            raise ValueError(f"{path} needs at least one chosen and one rejected piece{where} "
                             f"(has {len(chosen)} chosen, {len(rejected)} rejected)")
        pairs += preference_pairs(chosen, rejected)
    missing = [p for p in dict.fromkeys(p for pair in pairs for p in pair) if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} files named in {path} are gone, e.g. {missing[0]}")
    return pairs


def encode_for_preference(text: str, patchilizer: Patchilizer, patch_length: int) -> torch.Tensor:
    """A whole generated text as one training sequence, head kept when too long: [N, 16]."""
    patches = patchilizer.encode_train(text, patch_length, cut=False)[:patch_length]
    return torch.tensor(patches, dtype=torch.long)


def target_counts(model, sequences: dict[str, torch.Tensor]) -> dict[str, int]:
    """How many chars the model's summed log-prob of each distinct text covers (for the NLL term)."""
    return {name: int(model.num_targets(seq[None], torch.ones(1, len(seq), dtype=torch.long)))
            for name, seq in sequences.items()}


@torch.no_grad()
def reference_logps(reference, sequences: dict[str, torch.Tensor], batch_size: int = 4,
                    device: str | torch.device = "cpu") -> dict[str, float]:
    """Summed log-prob of each distinct text under the frozen reference (eval mode, no dropout)."""
    reference.eval()
    names = sorted(sequences, key=lambda n: len(sequences[n]))  # similar lengths pad less
    result: dict[str, float] = {}
    for start in range(0, len(names), batch_size):
        group = names[start:start + batch_size]
        batch = collate_patches([sequences[n] for n in group])
        logps = reference.sequence_logp(batch["patches"].to(device), batch["masks"].to(device))
        result.update(zip(group, logps.double().cpu().tolist()))
    return result


class PreferencePairs(Dataset):
    """(chosen, rejected) text pairs with the reference log-probs of both and the chosen text's
    target count (`target_counts`, for the NLL term)."""

    def __init__(self, pairs: list[tuple[str, str]], sequences: dict[str, torch.Tensor], ref_logps: dict[str, float],
                 lengths: dict[str, int]):
        self.pairs, self.sequences, self.ref_logps, self.lengths = list(pairs), sequences, ref_logps, lengths

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        chosen, rejected = self.pairs[index]
        return {"chosen": self.sequences[chosen], "rejected": self.sequences[rejected],
                "ref_chosen": self.ref_logps[chosen], "ref_rejected": self.ref_logps[rejected],
                "chosen_length": self.lengths[chosen]}


def collate_pairs(items: list[dict]) -> dict[str, torch.Tensor]:
    """B pairs -> one [2B, N, 16] batch (chosen rows first) + reference log-probs [B] each, and
    the chosen texts' target counts [B] (for the NLL term)."""
    batch = collate_patches([i["chosen"] for i in items] + [i["rejected"] for i in items])
    return {**batch, "chosen_length": torch.tensor([i["chosen_length"] for i in items], dtype=torch.float64),
            "ref_chosen": torch.tensor([i["ref_chosen"] for i in items], dtype=torch.float64),
            "ref_rejected": torch.tensor([i["ref_rejected"] for i in items], dtype=torch.float64)}


def dpop_compute_loss(beta: float, lam: float, nll_weight: float = 0.0):
    """compute_loss(model, batch) for the training loop: (mean DPOP loss, step metrics)."""

    def compute_loss(model, batch):
        logps = model(batch["patches"], batch["masks"], sequence_logp=True).double()  # [2B], through DDP
        pairs = len(batch["ref_chosen"])
        losses, chosen_rewards, rejected_rewards = dpop_loss(
            logps[:pairs], logps[pairs:], batch["ref_chosen"], batch["ref_rejected"], beta, lam,
            nll_weight, batch["chosen_length"])
        margins = chosen_rewards - rejected_rewards
        metrics = {"reward_margin": margins.mean().item(), "chosen_reward": chosen_rewards.mean().item(),
                   "rejected_reward": rejected_rewards.mean().item(),
                   "accuracy": (margins > 0).double().mean().item()}
        return losses.mean().float(), metrics

    return compute_loss


def disable_dropout(model) -> None:
    """Every dropout of the model off (in place): train mode then computes what eval mode does."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def dpo_weights_name(tag: str, beta: float, lam: float, config, learning_rate: float, batch_size: int) -> str:
    """Published RL naming, e.g. weights_notagen_<tag>_beta_0.1_lambda_10_p_size_16_..._lr_1e-06_batch_1.pth"""
    sizes = config.run_name("", learning_rate, batch_size)  # "_p_size_16_..._batch_1", or a baseline's
    return f"weights_{config.model_type}_{tag}_beta_{beta}_lambda_{lam}{sizes}.pth"


def run_dpo_training(settings) -> Path:
    """RL/train.py: policy from `settings.weights_path`, DPOP on the preference file; returns weights."""
    lam = getattr(settings, "lambda")  # LAMBDA in RL/config.py; `lambda` is a Python keyword
    nll_weight = getattr(settings, "nll_weight", 0.0)
    weights = resolve_weights_path(settings.weights_path)  # "" = the shipped checkpoint
    pairs = read_preferences(settings.preference_path)
    chosen, rejected = list(dict.fromkeys(c for c, _ in pairs)), list(dict.fromkeys(r for _, r in pairs))
    policy = prepare_for_training(load_model(weights), settings)
    if getattr(settings, "disable_dropout", True):
        disable_dropout(policy)
    patchilizer = Patchilizer(policy.config.patch_size)
    texts = {p: Path(p).read_text(encoding="utf-8") for p in dict.fromkeys(chosen + rejected)}
    sequences = {p: encode_for_preference(t, patchilizer, policy.config.patch_length) for p, t in texts.items()}

    pairs_per_step = settings.batch_size
    steps = settings.optimization_steps
    weights_name = dpo_weights_name(settings.tag, settings.beta, lam, policy.config,
                                    settings.learning_rate, pairs_per_step)
    config = TrainConfig(
        output_dir=settings.output_dir, weights_name=weights_name, batch_size=pairs_per_step,
        learning_rate=settings.learning_rate, num_epochs=max(1, math.ceil(steps * pairs_per_step / len(pairs))),
        max_steps=steps, max_grad_norm=settings.max_grad_norm, warmup_steps=settings.warmup_steps,
        weight_decay=0.0, seed=settings.seed, save_every_steps=settings.save_every_steps,
        log_every_steps=settings.log_every_steps, load_from_checkpoint=settings.load_from_checkpoint,
        overwrite=getattr(settings, "overwrite", False), num_threads=getattr(settings, "num_threads", 0),
        mixed_precision=settings.mixed_precision, report_to=settings.report_to)
    accelerator = make_accelerator(config)

    # the reference is the starting policy, frozen: its log-probs are taken from the policy before
    # the first step (adapters bypassed), so no second copy of the weights is ever loaded
    policy.to(accelerator.device)
    with adapters_disabled(policy):
        ref_logps = reference_logps(policy, sequences, device=accelerator.device)

    dataset = PreferencePairs(pairs, sequences, ref_logps, target_counts(policy, sequences))
    accelerator.print(f"DPOP: {len(dataset)} pairs of {len(chosen)} chosen and {len(rejected)} rejected pieces, "
                      f"{steps} steps of {pairs_per_step * accelerator.num_processes} pair(s)"
                      + (f" ({pairs_per_step} on each of {accelerator.num_processes} processes)" if accelerator.num_processes > 1 else "")
                      + f", beta {settings.beta}, lambda {lam}"
                      + (f", NLL weight {nll_weight}" if nll_weight else ""))
    train(policy, dataset, None, collate_pairs, config, accelerator=accelerator,
          compute_loss=dpop_compute_loss(settings.beta, lam, nll_weight),
          checkpoint_extra={"dpo": {"beta": settings.beta, "lambda": lam, "nll_weight": nll_weight,
                                    "preference_path": str(settings.preference_path)},
                            "settings": plain_settings(settings)})
    if accelerator.is_main_process:  # the policy after the last step is the result of the iteration
        save_model_files(config.weights_path, accelerator.unwrap_model(policy))  # adapters merged, file beside
        if (prompts := weights.parent / "prompts.txt").is_file():  # it knows the prompts it started with
            atomic_write_text(Path(config.output_dir) / "prompts.txt", prompts.read_text(encoding="utf-8"))
    accelerator.wait_for_everyone()
    return config.weights_path
