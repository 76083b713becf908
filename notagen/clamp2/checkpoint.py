"""Load published (or project) CLaMP 2 and M3 checkpoints, sizes read from the file.

Design choices
- Reading and strict loading are the package's (`notagen.checkpoint`): `weights_only=True`, a clear
  error for a file that is not a checkpoint, and for one that does not fit, an error naming the
  missing and unexpected keys and the first mismatched shapes.
- A CLaMP 2 file (`music_model.*`, `music_proj.*`) gives the encoder plus projection. Its text side
  (`text_model.*`, `text_proj.*`) and contrastive temperature (`logit_scale`) are ignored: this
  project has no text model, and music features need none.
- A bare M3 file (`encoder.*` + `decoder.*`, what M3 pre-training writes) gives a music model
  without projection: its features are the mean-pooled encoder outputs (hidden-sized), centred on
  the file's `feature_center` when it has one (see `Clamp2MusicModel`).
- BERT buffers that older transformers versions saved (`position_ids`, `token_type_ids`) are
  dropped before loading, like GPT-2's `attn.bias` buffers are by the package loader.
- Models are built normally, not on the meta device: BERT's non-persistent buffers must exist.
"""
from __future__ import annotations

from pathlib import Path

import torch

from notagen.checkpoint import CheckpointError, load_state_dict_checked, read_checkpoint

from .model import Clamp2MusicModel, M3Model
from .sizes import m3_config_from_state_dict

CLAMP2_MUSIC_PREFIX = "music_model."
CLAMP2_PROJ_PREFIX = "music_proj."
CLAMP2_IGNORED_PREFIXES = ("text_model.", "text_proj.", "logit_scale")
M3_ENCODER_PREFIX = "encoder."
M3_DECODER_PREFIX = "decoder."
STALE_BERT_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
FEATURE_CENTER_KEY = "feature_center"  # top-level entry of M3 files written by clamp2/train-m3.py


def strip_prefix(state: dict, prefix: str) -> dict:
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def _state_and_config(path: str | Path, config: dict | None) -> tuple[dict, dict | None, dict]:
    """The file's state dict (stale BERT buffers dropped), the config to trust for head count
    (the caller's, else one stored in a project checkpoint, else None), and the whole file."""
    checkpoint = read_checkpoint(path)
    state = {k: v for k, v in checkpoint["model"].items() if not k.endswith(STALE_BERT_BUFFERS)}
    stored = checkpoint.get("config")
    given = config if config is not None else stored if isinstance(stored, dict) else None
    return state, (dict(given) if given is not None else None), checkpoint


def _sizes(path, encoder_state: dict, decoder_state: dict | None, given: dict | None):
    try:
        return m3_config_from_state_dict(encoder_state, decoder_state, given=given)
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{path}: {error.args[0]}") from None


def load_clamp2_music(path: str | Path, device: str | torch.device | None = None,
                      config: dict | None = None) -> Clamp2MusicModel:
    """The CLaMP 2 music side of a checkpoint, in eval mode on `device` (default CPU).

    - CLaMP 2 checkpoint (`music_model.*`, `music_proj.*`; text keys ignored): encoder + projection.
    - Bare M3 checkpoint (`encoder.*` + `decoder.*`): the encoder alone, no projection, so features
      are the mean-pooled encoder outputs (decoder keys are ignored).
    Sizes come from tensor shapes; heads = hidden / 64 unless `config` (or a `config` dict stored
    in the file) says otherwise, e.g. `{"heads": 2}`; any other size it states must agree.
    The model gets `checkpoint_kind` = "clamp2" or "m3".
    """
    state, given, checkpoint = _state_and_config(path, config)
    if any(key.startswith(CLAMP2_MUSIC_PREFIX) for key in state):
        kind = "clamp2"
        encoder_state = strip_prefix(state, CLAMP2_MUSIC_PREFIX)
        proj_weight = state.get(CLAMP2_PROJ_PREFIX + "weight")  # [projection, hidden]
        projection = proj_weight.shape[0] if proj_weight is not None else 768
        music_state = {k: v for k, v in state.items() if not k.startswith(CLAMP2_IGNORED_PREFIXES)}
    elif any(key.startswith(M3_ENCODER_PREFIX) for key in state):
        kind = "m3"
        encoder_state = strip_prefix(state, M3_ENCODER_PREFIX)
        projection = None
        music_state = {CLAMP2_MUSIC_PREFIX + k: v for k, v in encoder_state.items()}
    else:
        raise CheckpointError(f"{path} holds neither a CLaMP 2 music model ({CLAMP2_MUSIC_PREFIX}*) nor "
                              f"an M3 ({M3_ENCODER_PREFIX}*); its keys: {', '.join(sorted(state)[:8])}")
    model = Clamp2MusicModel(_sizes(path, encoder_state, None, given), projection_size=projection)
    load_state_dict_checked(model, music_state, source=str(path))
    model.checkpoint_kind = kind
    if kind == "m3" and torch.is_tensor(checkpoint.get(FEATURE_CENTER_KEY)):
        model.feature_center = checkpoint[FEATURE_CENTER_KEY].float()
    return model.to(device or "cpu").eval()


def load_m3_model(path: str | Path, device: str | torch.device | None = None,
                  config: dict | None = None) -> M3Model:
    """A bare M3 checkpoint (`encoder.*` + `decoder.*`) as a trainable M3Model, sizes from the file."""
    state, given, _ = _state_and_config(path, config)
    encoder_state = strip_prefix(state, M3_ENCODER_PREFIX)
    decoder_state = strip_prefix(state, M3_DECODER_PREFIX)
    if not encoder_state or not decoder_state:
        raise CheckpointError(f"{path} is not an M3 checkpoint: it needs {M3_ENCODER_PREFIX}* and "
                              f"{M3_DECODER_PREFIX}* keys")
    model = M3Model(_sizes(path, encoder_state, decoder_state, given))
    load_state_dict_checked(model, state, source=str(path))
    return model.to(device or "cpu")
