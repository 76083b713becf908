"""Error types that modules on both sides of an import raise: kept here, so that neither has to
import the other for them (`checkpoint.py` loads LoRA files through `lora.py`, which refuses
adapter weights that do not fit with the same error)."""
from __future__ import annotations


class CheckpointError(ValueError):
    """A file that is not a checkpoint, or whose tensors do not fit the model."""
