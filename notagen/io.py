"""Atomic file writes (a reader, or a crash, never sees a half-written file), and log-safe text.

Every output of the project goes through these: write to a temporary file in the same folder,
flush to disk, then `os.replace` it over the target (atomic on POSIX and Windows).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


class DiskFullError(OSError):
    """No space left where a file was being written; the message names the file."""


def _disk_full(path: Path) -> DiskFullError:
    try:
        free = f", {shutil.disk_usage(path.parent).free / 2**20:.0f} MB free"
    except OSError:
        free = ""
    return DiskFullError(errno.ENOSPC, f"disk full while writing {path}{free}: nothing was replaced; make room "
                                       f"and run again")


def _is_disk_full(error: BaseException, path: Path) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # torch.save reports a short write as RuntimeError("... unexpected pos ...")
    if isinstance(error, RuntimeError) and "unexpected pos" in str(error):
        try:
            return shutil.disk_usage(path.parent).free < 64 * 2**20
        except OSError:
            return False
    return False


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary sibling of `path` for writing; it replaces `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    try:
        os.chmod(tmp_name, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        if not isinstance(error, DiskFullError) and _is_disk_full(error, path):
            raise _disk_full(path) from error
        raise


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)


def atomic_write_json(path: str | Path, obj, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def atomic_torch_save(obj, path: str | Path) -> None:
    """`torch.save` that never leaves a truncated checkpoint behind (a crash keeps the old one)."""
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def log_safe(text: str) -> str:
    """`text` with backslashes and control characters escaped: one log field on one line."""
    out = []
    for char in str(text):
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif not char.isprintable():
            out.append(f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)
