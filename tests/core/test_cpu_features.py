"""bf16 on a CPU without bf16 instructions warns, naming the missing flag."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from embedder_core import Embedder, SlowDtypeWarning, cpu_features

X86_AVX2_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 bmi2
bogomips\t: 4899.99

processor\t: 1
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 bmi2
"""
X86_AVX512_BF16_CPUINFO = "flags\t\t: sse avx2 avx512f avx512bw avx512_vnni avx512_bf16\n"
X86_AMX_CPUINFO = "flags\t\t: sse avx2 avx512f amx_tile amx_bf16 amx_int8\n"
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n"
ARM_BF16_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
AVX2_FLAGS = cpu_features.cpu_flags(X86_AVX2_CPUINFO)
AMX_FLAGS = cpu_features.cpu_flags(X86_AMX_CPUINFO)


def test_cpuinfo_flags_are_read_per_architecture():
    flags = cpu_features.cpu_flags(X86_AVX2_CPUINFO)
    assert flags is not None and {"avx2", "fma"} <= flags and "bogomips" not in flags
    assert cpu_features.cpu_flags(ARM_BF16_CPUINFO) == {"fp", "asimd", "sve", "bf16", "i8mm"}
    assert cpu_features.cpu_flags("processor\t: 0\n") is None


@pytest.mark.parametrize(
    ("cpuinfo", "machine", "missing"),
    [
        (X86_AVX2_CPUINFO, "x86_64", ("avx512_bf16", "amx_bf16")),
        (X86_AVX512_BF16_CPUINFO, "x86_64", ()),
        (X86_AMX_CPUINFO, "x86_64", ()),
        (ARM_CPUINFO, "aarch64", ("bf16",)),
        (ARM_BF16_CPUINFO, "aarch64", ()),
        (X86_AVX2_CPUINFO, "riscv64", ()),  # unknown architecture: cannot tell, no warning
    ],
)
def test_missing_native_bf16_flags(cpuinfo: str, machine: str, missing: tuple[str, ...]):
    flags = cpu_features.cpu_flags(cpuinfo)
    assert cpu_features.missing_bf16_flags(flags, machine) == missing
    message = cpu_features.bf16_cpu_warning(flags, machine)
    if missing:
        assert message is not None
        for flag in missing:
            assert flag in message
        assert "100x slower" in message and "float32" in message
    else:
        assert message is None


def test_unknown_cpu_gives_no_warning():
    assert cpu_features.bf16_cpu_warning(None, "x86_64") is None


@pytest.fixture
def avx2_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: AVX2_FLAGS)
    monkeypatch.setattr(cpu_features.platform, "machine", lambda: "x86_64")


def test_bf16_on_a_cpu_without_bf16_warns(avx2_only: None, tiny_jina_dir: Path):
    with pytest.warns(SlowDtypeWarning, match="avx512_bf16 or amx_bf16") as caught:
        embedder = Embedder.from_pretrained(tiny_jina_dir, device="cpu", dtype="bfloat16")
    assert len(caught) == 1
    assert embedder.dtype == torch.bfloat16  # a warning, not a refusal: it still runs
    assert embedder.encode("a text").shape == (1, embedder.dimension)


def test_float32_or_native_bf16_does_not_warn(
    avx2_only: None, tiny_jina_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowDtypeWarning)
        Embedder.from_pretrained(tiny_jina_dir, device="cpu")  # float32, the CPU default
        monkeypatch.setattr(cpu_features, "cpu_flags", lambda: AMX_FLAGS)
        Embedder.from_pretrained(tiny_jina_dir, device="cpu", dtype="bf16")
