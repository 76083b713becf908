"""M3 masked-patch pre-training on the shared accelerate loop (clamp2/train-m3.py).

For users without the published CLaMP 2 / M3 weights (and for the embedded default): train an M3
on interleaved ABC, then use the best checkpoint as CLAMP2_WEIGHTS_PATH for feature extraction.
After training, the mean pooled encoder output over the training pieces is stored in the best
checkpoint as `feature_center` (see `Clamp2MusicModel`): features of a bare M3 are centred on it.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from notagen.io import atomic_torch_save
from notagen.paths import resolve_input_path, resolve_output_dir
from notagen.settings import apply_num_threads, plain_settings
from notagen.training import TrainConfig, make_accelerator, seed_everything, train

from .checkpoint import FEATURE_CENTER_KEY, load_clamp2_music, load_m3_model
from .data import collate_m3, m3_datasets
from .features import extract_features_batched
from .model import M3Model
from .patchilizer import M3Patchilizer
from .sizes import m3_config_from_settings


@torch.no_grad()
def feature_center(weights_path: str | Path, files: list[Path], batch_size: int = 32) -> torch.Tensor:
    """Mean pooled encoder output [hidden] of `files` under the (uncentred) M3 in `weights_path`."""
    model = load_clamp2_music(weights_path)
    model.feature_center = None
    patchilizer = M3Patchilizer(model.config.patch_size)
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    features = extract_features_batched(model, patchilizer, texts, batch_size)
    return torch.tensor(sum(f.reshape(-1) for f in features) / len(features), dtype=torch.float32)


def store_feature_center(weights_path: str | Path, files: list[Path]) -> torch.Tensor:
    checkpoint = torch.load(weights_path, map_location="cpu", weights_only=True)
    checkpoint[FEATURE_CENTER_KEY] = feature_center(weights_path, files)
    atomic_torch_save(checkpoint, weights_path)
    return checkpoint[FEATURE_CENTER_KEY]


def run_m3_training(settings):
    """Train (or continue) an M3 with the stage settings; returns the loop's TrainResult."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    apply_num_threads(settings)
    seed_everything(settings.seed)
    if settings.init_weights_path:
        model = load_m3_model(resolve_input_path(settings.init_weights_path))
        model.decoder_patch_sample = settings.decoder_patch_sample
    else:
        model = M3Model(m3_config_from_settings(settings), decoder_patch_sample=settings.decoder_patch_sample)
    train_dir = resolve_input_path(settings.train_dir)
    train_data, eval_data = m3_datasets(train_dir, model.config.patch_size, model.config.patch_length,
                                        settings.eval_share, settings.seed)
    config = TrainConfig.from_settings(settings, output_dir=str(resolve_output_dir(settings.output_dir)),
                                       run_name="m3")
    extra = {"stage": "m3", "settings": plain_settings(settings)}
    accelerator = make_accelerator(config)
    result = train(model, train_data, eval_data, collate_m3, config, accelerator=accelerator,
                   checkpoint_extra=extra)
    if accelerator.is_main_process and result.weights_path.is_file():
        center = store_feature_center(result.weights_path, list(train_data.files))
        accelerator.print(f"M3 weights: {result.weights_path} (feature centre over "
                          f"{len(train_data.files)} pieces, norm {center.norm():.3f})")
    accelerator.wait_for_everyone()
    return result
