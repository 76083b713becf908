"""M3 pre-training data: interleaved ABC files -> padded patch batches for `M3Model(**batch)`.

Design choices
- Items are read and encoded lazily (any corpus size, DataLoader workers welcome), with the same
  text preparation as feature extraction (`%` comment lines dropped, special patches added), so
  the encoder is trained on exactly what it will later see.
- A piece longer than patch_length patches is cut to a window of patch_length: a random window
  when training, the first window otherwise. The window comes from a `random.Random` seeded by
  (seed, epoch, index), as in the NotaGen datasets: an item depends on nothing else (not on
  workers, process count or resume point); the training loop calls `set_epoch` every epoch.
- The masking itself happens in `M3Model.forward`, not here, so batches stay plain data.
- `collate_m3` pads to the longest piece of the batch and returns the keyword arguments of
  `M3Model.forward`: `{"patches": [B, N, P] int64, "masks": [B, N] int64}`.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch
from torch.utils.data import Dataset

from notagen.data import collate_patches

from .extraction import list_abc_files
from .features import encode_for_feature
from .patchilizer import M3Patchilizer


class M3TrainingDataset(Dataset):
    def __init__(self, files: list[str | Path], patch_size: int, patch_length: int,
                 random_window: bool = True, seed: int = 0):
        self.files = [Path(f) for f in files]
        self.patchilizer = M3Patchilizer(patch_size)
        self.patch_length = patch_length
        self.random_window = random_window
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """New random windows each epoch, reproducibly."""
        self.epoch = epoch

    def rng(self, index: int) -> random.Random:
        return random.Random(f"m3:{self.seed}:{self.epoch}:{index}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        """Patches of one piece, at most patch_length of them: [n, P] int64."""
        patches = encode_for_feature(self.patchilizer, self.files[index].read_text(encoding="utf-8"))
        excess = len(patches) - self.patch_length
        start = self.rng(index).randint(0, excess) if excess > 0 and self.random_window else 0
        return torch.from_numpy(patches[start:start + self.patch_length])


def collate_m3(items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Pad a list of [n_i, P] patch tensors to {"patches": [B, N, P], "masks": [B, N]}."""
    return collate_patches(items)


def split_files(folder: str | Path, eval_share: float, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """(train, eval) lists of the .abc files under `folder`, shuffled with `seed`; eval gets
    round(eval_share * total) files, at least one when eval_share > 0 and there are two or more."""
    files = list_abc_files(folder)
    if not files:
        raise FileNotFoundError(f"no .abc files under {folder}")
    random.Random(seed).shuffle(files)
    num_eval = round(eval_share * len(files))
    if eval_share > 0 and len(files) > 1:
        num_eval = min(max(num_eval, 1), len(files) - 1)
    return files[num_eval:], files[:num_eval]


def m3_datasets(folder: str | Path, patch_size: int, patch_length: int, eval_share: float = 0.05,
                seed: int = 0) -> tuple[M3TrainingDataset, M3TrainingDataset | None]:
    """Train (random windows) and eval (first windows) datasets over the .abc files of `folder`;
    the eval set is None when eval_share is 0."""
    train_files, eval_files = split_files(folder, eval_share, seed)
    train = M3TrainingDataset(train_files, patch_size, patch_length, random_window=True, seed=seed)
    evaluation = (M3TrainingDataset(eval_files, patch_size, patch_length, random_window=False, seed=seed)
                  if eval_files else None)
    return train, evaluation
