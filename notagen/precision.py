"""Whether this CPU computes in bfloat16, and the one message for when it does not.

bf16 autocast (training) and bf16 weights (generation) run on any CPU, but only CPUs with bf16
instructions (x86 AVX512-BF16 or AMX) make them faster; elsewhere PyTorch converts every product
through float32 and bf16 is slower than float32. Measured: benchmarks/bf16.py.
"""
from __future__ import annotations

import functools
import warnings
from pathlib import Path


@functools.cache
def cpu_bf16() -> str:
    """"AMX", "AVX512-BF16" or "" (none found, or not a Linux x86 CPU that says)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return ""
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return ""


def warn_if_emulated(what: str) -> None:
    """A warning, once per call site, when bf16 on this CPU would be emulated (slower than float32)."""
    if not cpu_bf16():
        warnings.warn(f"{what}: this CPU shows no bf16 instructions (avx512_bf16 / amx_bf16 in /proc/cpuinfo), "
                      f"so PyTorch emulates bfloat16 and it runs slower than float32; use float32 here",
                      stacklevel=3)
