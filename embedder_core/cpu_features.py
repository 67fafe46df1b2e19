"""What the CPU runs natively, read from ``/proc/cpuinfo``, and the warnings that follow.

bfloat16 on a CPU without bf16 instructions is emulated: measured on an AVX2-only CPU, a
2048x1024x4096 bf16 matmul ran over 100x slower than the same matmul in float32. x86 CPUs
have native bf16 matmuls with AVX512-BF16 (flag ``avx512_bf16``) or AMX (``amx_bf16``);
Arm CPUs with FEAT_BF16 (``bf16`` in the Features line).
"""

from __future__ import annotations

import platform
from pathlib import Path

X86_BF16_FLAGS: tuple[str, ...] = ("avx512_bf16", "amx_bf16")
ARM_BF16_FLAGS: tuple[str, ...] = ("bf16",)
_CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The feature flags of the first CPU (x86 ``flags``, Arm ``Features``).

    Reads ``/proc/cpuinfo`` unless its text is given; None where it is unavailable (not
    Linux) or has no flags line.
    """
    if cpuinfo is None:
        try:
            cpuinfo = _CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return None


def missing_bf16_flags(flags: frozenset[str] | None, machine: str | None = None) -> tuple[str, ...]:
    """The flags any one of which would give native bf16 here; empty when bf16 is native
    or when it cannot be told (no flags, or an unknown architecture)."""
    if flags is None:
        return ()
    arch = (machine or platform.machine()).lower()
    if arch in ("x86_64", "amd64", "i386", "i686"):
        wanted = X86_BF16_FLAGS
    elif arch in ("aarch64", "arm64"):
        wanted = ARM_BF16_FLAGS
    else:
        return ()
    return () if flags & set(wanted) else wanted


def bf16_cpu_warning(flags: frozenset[str] | None, machine: str | None = None) -> str | None:
    """The warning for ``dtype=bfloat16`` on this CPU, or None when bf16 is native here."""
    missing = missing_bf16_flags(flags, machine)
    if not missing:
        return None
    return (
        "dtype=bfloat16 on a CPU without native bf16 instructions (no "
        f"{' or '.join(missing)} flag in /proc/cpuinfo): bf16 matrix multiplies are emulated "
        "and can run about 100x slower than float32 (measured: a 2048x1024x4096 bf16 matmul "
        "over 100x slower than float32 on an AVX2-only CPU). Use dtype='float32', the CPU "
        "default."
    )
