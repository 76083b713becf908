"""The NotaGen training stages: what `pretrain/train-gen.py` and `finetune/train-gen.py` do.

Settings (a `parse_settings` namespace of the stage's config.py) -> model, datasets, TrainConfig ->
`notagen.training.train`. Pre-training builds a model of `model` (notagen, or a baseline of
`notagen.baselines` matched to the preset's parameter count) from a preset (sizes that are not 0
override it); fine-tuning loads pre-trained weights, whose type and sizes win, writes the `prompts.txt` the
model knows beside its checkpoints, and reads its data with the three prompt lines required.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from types import SimpleNamespace

from ..baselines import FLAT_TYPES, MODEL_TYPES, build_flat_model, matched_config
from ..checkpoint import load_model
from ..config import resolve_config
from ..data import NotaGenDataset, collate_patches
from ..io import atomic_write_text
from ..lora import add_lora, enable_gradient_checkpointing, lora_settings
from ..model import NotaGenLMHeadModel
from ..paths import resolve_input_path, resolve_output_dir, resolve_weights_path
from ..settings import apply_num_threads, plain_settings
from .checkpoints import check_output_dir
from .loop import train
from .parts import seed_everything
from .settings import TrainConfig, TrainResult

SIZE_SETTINGS = ("patch_size", "patch_length", "patch_num_layers", "char_num_layers", "hidden_size")
BASELINE_SIZE_SETTINGS = ("hidden_size", "num_layers", "patch_length")


def find_weights_file(path: str | Path) -> Path:
    """A weights file, or the single `weights_*.pth` inside a folder (`notagen.paths` rule)."""
    if not str(path or "").strip():
        raise FileNotFoundError("no pre-trained weights given")
    try:
        return resolve_weights_path(path)
    except FileNotFoundError as error:
        if str(error).startswith("weights file not found"):
            raise FileNotFoundError(f"pre-trained weights not found: {path}") from None
        raise


def check_sizes(settings, base, names):
    """`base` (a pre-trained file's config) when every size setting among `names` is 0 or fits it."""
    given = {name: int(getattr(settings, name, 0) or 0) for name in names}
    clashes = [f"{n}={v} (file: {getattr(base, n)})" for n, v in given.items() if v and v != getattr(base, n)]
    if clashes:
        raise ValueError(f"size settings do not fit the pre-trained weights: {', '.join(clashes)}; "
                         f"leave them at 0 to take the sizes from the file")
    return base


def notagen_model_config(settings, base=None):
    """Sizes: settings that are not 0 override the preset (pre-training) or must match the
    pre-trained file (fine-tuning, `base` = the file's config)."""
    if base is not None:
        return check_sizes(settings, base, SIZE_SETTINGS)
    given = {name: int(getattr(settings, name, 0) or 0) for name in SIZE_SETTINGS}
    config = resolve_config(getattr(settings, "preset", "") or "small")
    return config.with_(**{n: v for n, v in given.items() if v})


def baseline_model_config(settings, model_type: str):
    """A baseline's sizes: NotaGen's preset matched in parameters; hidden_size, num_layers and
    patch_length (the training window) override it."""
    config = matched_config(model_type, getattr(settings, "preset", "") or "small")
    given = {name: int(getattr(settings, name, 0) or 0) for name in BASELINE_SIZE_SETTINGS}
    changes = {name: value for name, value in given.items() if value}
    if "hidden_size" in changes:
        changes["num_heads"] = 0  # hidden_size // 64 again, not the preset's count
    return config.with_(**changes)


def refuse_other_sizes(settings, model_type: str) -> None:
    """A size setting that the model type does not have is an error, not silently ignored."""
    own = SIZE_SETTINGS if model_type == "notagen" else BASELINE_SIZE_SETTINGS
    foreign = [name for name in (*SIZE_SETTINGS, *BASELINE_SIZE_SETTINGS)
               if name not in own and int(getattr(settings, name, 0) or 0)]
    if foreign:
        raise ValueError(f"{', '.join(sorted(set(foreign)))} {'is' if len(set(foreign)) == 1 else 'are'} not a size "
                         f"of a {model_type} model: leave {'it' if len(set(foreign)) == 1 else 'them'} at 0 "
                         f"(its sizes: {', '.join(own)})")


def stage_model(settings, pretrained: Path | None):
    """The model a training stage starts from: the pre-trained file's (its type and sizes win), or a
    new one of `settings.model` (notagen, abc_gpt2, folk_rnn)."""
    asked = (getattr(settings, "model", "") or "").strip().lower()
    if asked and asked not in MODEL_TYPES:
        raise ValueError(f"unknown model {asked!r}; choose one of {', '.join(MODEL_TYPES)}")
    if pretrained is not None:
        model = load_model(pretrained).train()
        if asked and asked != model.config.model_type:
            raise ValueError(f"model={asked} but {pretrained} holds a {model.config.model_type} model; "
                             f"leave model empty to take the type from the file")
        refuse_other_sizes(settings, model.config.model_type)
        check_sizes(settings, model.config, SIZE_SETTINGS if model.config.model_type == "notagen" else BASELINE_SIZE_SETTINGS)
        return model
    refuse_other_sizes(settings, asked or "notagen")
    if asked in FLAT_TYPES:
        return build_flat_model(baseline_model_config(settings, asked))
    return NotaGenLMHeadModel(notagen_model_config(settings))


def prepare_for_training(model, settings, lora: bool = True):
    """LoRA adapters (`lora_rank` > 0, where the stage allows them) and gradient checkpointing
    (`gradient_checkpointing`) as the settings ask; the model is changed in place."""
    if model.config.model_type != "notagen":
        if (lora and lora_settings(settings) is not None) or getattr(settings, "gradient_checkpointing", False):
            raise ValueError(f"LoRA adapters and gradient checkpointing are for NotaGen models; train the "
                             f"{model.config.model_type} baseline fully (lora_rank 0, gradient_checkpointing false)")
        return model
    # GPT-2's token embedding of the patch decoder is never used (inputs are embeddings): keep it
    # out of DDP's gradient bookkeeping, but in the optimizer (published optimizer layout)
    model.patch_level_decoder.base.wte.weight.requires_grad_(False)
    adapters = lora_settings(settings) if lora else None
    if adapters is not None:
        add_lora(model, adapters)
    if getattr(settings, "gradient_checkpointing", False):
        enable_gradient_checkpointing(model)
    return model


def notagen_compute_loss(patch_sample: int):
    """NotaGen's loss on a collated batch; patch sampling in training only (eval sees all patches)."""
    def compute_loss(model, batch):
        sample = patch_sample if model.training else 0
        return model(batch["patches"], batch["masks"], patch_sample=sample).loss
    return compute_loss


def prompt_count_lines(counts, index) -> list[str]:
    """What fine-tuning prints at start: pieces per prompt (most first) and how many have none."""
    pieces, without = sum(counts.values()), counts.get((), 0)
    prompts = sorted(((n, prompt) for prompt, n in counts.items() if prompt), key=lambda item: (-item[0], item[1]))
    lines = [f"fine-tuning on {pieces} pieces of {index}: {len(prompts)} prompts, "
             f"{without} pieces without prompt lines"]
    lines += [f"  {n:5d}  {' / '.join(prompt)}" for n, prompt in prompts]
    if not prompts:
        lines.append("  no piece has prompt lines: the model learns no prompt and no prompts.txt is written "
                     "(stage 2's --metadata adds them, see docs/own-scores.md)")
    return lines


def run_notagen_training(settings: SimpleNamespace, stage: str) -> TrainResult:
    """Everything `pretrain/train-gen.py` and `finetune/train-gen.py` do, from parsed settings."""
    if stage not in ("pretrain", "finetune"):
        raise ValueError(f"unknown stage {stage!r}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    apply_num_threads(settings)
    seed_everything(settings.seed)  # the same initial weights in every process

    pretrained = None
    if stage == "finetune":
        if not getattr(settings, "pretrained_path", ""):
            raise ValueError("set pretrained_path (a weights file, or a folder holding one) to fine-tune")
        pretrained = find_weights_file(settings.pretrained_path)
    model = stage_model(settings, pretrained)
    model_config = model.config
    prepare_for_training(model, settings, lora=stage == "finetune")

    key_mode = getattr(settings, "key_mode", "") or ("near" if stage == "finetune" else "uniform")
    data_args = dict(patch_size=model_config.patch_size, patch_length=model_config.patch_length,
                     patch_stream=settings.patch_stream, seed=settings.seed,
                     require_prompt_lines=stage == "finetune")
    train_index = resolve_input_path(settings.data_train_index_path)
    train_data = NotaGenDataset(train_index, key_mode=key_mode, prompt_balance=getattr(settings, "prompt_balance", 0.0),
                                **data_args)  # the eval set keeps the data's own mix
    eval_data = None
    if settings.data_eval_index_path:
        eval_index = resolve_input_path(settings.data_eval_index_path)
        eval_data = NotaGenDataset(eval_index, key_mode=key_mode, **data_args)

    tag_name = model_config.run_name(settings.exp_tag, settings.learning_rate, settings.batch_size)
    kind = model_config.model_type  # file names: weights_<kind>_<tag>_<sizes>.pth (published for notagen)
    report_to = settings.report_to
    if getattr(settings, "wandb_logging", False) and "wandb" not in report_to:
        report_to = "wandb" if report_to in ("", "none") else f"{report_to},wandb"
    config = TrainConfig.from_settings(
        settings, output_dir=str(resolve_output_dir(settings.output_dir)),
        weights_name=f"weights_{kind}_{tag_name}.pth", run_name=f"{kind}_{tag_name}", report_to=report_to)
    check_output_dir(config)  # before prompts.txt is written
    if stage == "finetune" and int(os.environ.get("RANK", "0")) == 0:
        counts = train_data.prompt_counts()
        print("\n".join(prompt_count_lines(counts, train_index)), flush=True)
        # the prompts this model knows (data-formats.md s.6), where the inference script looks
        triples = sorted(prompt for prompt in counts if prompt)
        if triples:
            atomic_write_text(Path(config.output_dir) / "prompts.txt",
                              "".join(f"{p}|{c}|{i}\n" for p, c, i in triples))
    extra = {"stage": stage, "settings": plain_settings(settings)}
    if pretrained is not None:
        extra["pretrained_from"] = str(pretrained)
    return train(model, train_data, eval_data, collate_patches, config,
                 compute_loss=notagen_compute_loss(settings.patch_sampling_batch_size),
                 checkpoint_extra=extra)
