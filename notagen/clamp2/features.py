"""CLaMP 2 feature of a piece: segments of patch_length patches, pooled, weighted by length.

Design choices
- Feature of one text (spec, checked by m3_clamp2.json): drop `%` lines that are not `%%`, encode
  with special patches, cut into segments of patch_length where the last segment is the *last*
  patch_length patches (overlapping the one before when the piece does not divide evenly); each
  segment -> encoder, mean over its real patches, projection; the feature is the mean of the
  segment vectors weighted by patch_length (full segments) and the remainder (last segment).
  No L2 normalisation. Result: float32 array [1, feature_size].
- Batching: the segments of all given texts are pooled, sorted by length and run `batch_size` at
  a time, each batch padded only to its longest segment. Padding sits after the real patches and
  is masked out of attention and pooling, so a segment's vector does not depend on its batch
  (equal up to float rounding to one-at-a-time extraction; tested).
- `extract_feature` is `extract_features_batched` on one text: one code path.
"""
from __future__ import annotations

import numpy as np
import torch

from notagen.data import collate_patches

from .model import Clamp2MusicModel
from .patchilizer import M3Patchilizer, drop_comment_lines


def encode_for_feature(patchilizer: M3Patchilizer, text: str) -> np.ndarray:
    """Patches of a file's text as extraction sees them: [num_patches, patch_size] int64."""
    return np.asarray(patchilizer.encode(drop_comment_lines(text), add_special_patches=True), dtype=np.int64)


def segment(patches: np.ndarray, patch_length: int) -> tuple[list[np.ndarray], list[int]]:
    """Segments of at most patch_length patches and their weights (see module docstring)."""
    starts = range(0, len(patches), patch_length)
    segments = [patches[start:start + patch_length] for start in starts]
    segments[-1] = patches[-patch_length:]
    full, remainder = divmod(len(patches), patch_length)
    weights = [patch_length] * full + ([remainder] if remainder else [])
    return segments, weights


def pad_segments(segments: list[np.ndarray], patch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack segments padded to the longest: patches [B, N, P] int64, masks [B, N] int64."""
    batch = collate_patches([torch.as_tensor(np.asarray(s, dtype=np.int64).reshape(-1, patch_size))
                             for s in segments])
    return batch["patches"], batch["masks"]


@torch.inference_mode()
def features_of_patches(model: Clamp2MusicModel, patch_lists: list[np.ndarray],
                        batch_size: int = 16) -> list[np.ndarray]:
    """Features [1, feature_size] float32 for already-encoded pieces (see `encode_for_feature`)."""
    device = next(model.parameters()).device
    patch_length, patch_size = model.config.patch_length, model.config.patch_size
    segments, owners, weights = [], [], []
    for piece, patches in enumerate(patch_lists):
        piece_segments, piece_weights = segment(patches, patch_length)
        segments += piece_segments
        owners += [piece] * len(piece_segments)
        weights += piece_weights

    vectors = torch.empty(len(segments), model.feature_size, dtype=torch.float32)  # [S, F]
    order = sorted(range(len(segments)), key=lambda i: len(segments[i]), reverse=True)
    for start in range(0, len(order), max(1, batch_size)):
        rows = order[start:start + max(1, batch_size)]
        patches, masks = pad_segments([segments[i] for i in rows], patch_size)
        vectors[rows] = model(patches.to(device), masks.to(device)).float().cpu()  # [b, F]

    owner_index = torch.tensor(owners)  # [S]
    weight_column = torch.tensor(weights, dtype=torch.float32).unsqueeze(1)  # [S, 1]
    weighted_sums = torch.zeros(len(patch_lists), model.feature_size).index_add_(
        0, owner_index, vectors * weight_column)  # [files, F]
    weight_totals = torch.zeros(len(patch_lists)).index_add_(0, owner_index, weight_column[:, 0])
    features = weighted_sums / weight_totals.unsqueeze(1)
    return [features[i:i + 1].numpy() for i in range(len(patch_lists))]


def extract_features_batched(model: Clamp2MusicModel, patchilizer: M3Patchilizer, texts: list[str],
                             batch_size: int = 16) -> list[np.ndarray]:
    """CLaMP 2 features of several file texts, segments of all texts batched together."""
    return features_of_patches(model, [encode_for_feature(patchilizer, t) for t in texts], batch_size)


def extract_feature(model: Clamp2MusicModel, patchilizer: M3Patchilizer, text: str) -> np.ndarray:
    """CLaMP 2 feature [1, feature_size] of one file's text."""
    return extract_features_batched(model, patchilizer, [text], batch_size=1)[0]
