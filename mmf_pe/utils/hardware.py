"""What machine a number was measured on: CPU model, torch's CPU capability, bf16 instructions, GPU name.

Benchmarks print `hardware_summary()` above their tables and the precision resolver records the same facts, because
a bf16 timing means nothing without them: bf16 matmuls are ~2x faster than fp32 on a CPU with AVX512-BF16 / AMX and
~50x slower on one without (docs/precision.md). `ATEN_CPU_CAPABILITY` / `ONEDNN_MAX_CPU_ISA` in the environment
restrict torch's and oneDNN's kernels to an older instruction set (how this project measures AVX2-class rows on a newer
CPU); they are part of the summary when set.
"""
import functools
import os
import platform

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names of native bf16 dot products
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")


@functools.lru_cache(maxsize=1)
def _cpuinfo():
    """(model name, flags) from /proc/cpuinfo; (platform's processor name, None) where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            lines = cpuinfo.read().splitlines()
    except OSError:
        return platform.processor() or platform.machine() or "unknown CPU", None
    field = lambda name: next((line.split(":", 1)[1].strip() for line in lines  # noqa: E731
                               if line.split(":", 1)[0].strip() == name), None)
    return field("model name") or platform.processor() or "unknown CPU", set((field("flags") or "").split())


def cpu_model():
    return _cpuinfo()[0]


def cpu_bf16_flags():
    """The native bf16 instructions the CPU advertises (a tuple), or None where the flags cannot be read."""
    flags = _cpuinfo()[1]
    return None if flags is None else tuple(flag for flag in BF16_CPU_FLAGS if flag in flags)


def isa_limits():
    """{variable: value} of the set environment variables that restrict torch's / oneDNN's instruction set."""
    return {name: os.environ[name] for name in ISA_LIMITS if os.environ.get(name)}


def cpu_capability():
    """torch's CPU capability (`AVX2`, `AVX512`, ...) plus the bf16 instructions and any ISA limit, in one string."""
    capability = torch.backends.cpu.get_cpu_capability()
    flags = cpu_bf16_flags()
    parts = [capability, "bf16 flags: " + ("unknown" if flags is None else (", ".join(flags) or "none"))]
    parts += [f"{name}={value}" for name, value in isa_limits().items()]
    return f"{parts[0]} ({'; '.join(parts[1:])})"


def gpu_description(device=None):
    """`<name> (sm_XY)` of a CUDA device, or None without CUDA."""
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return f"{torch.cuda.get_device_name(device)} (sm_{major}{minor})"


def hardware_summary():
    """One line for a benchmark table's header: CPU model, cores, capability, torch version, GPU."""
    gpu = gpu_description()
    return (f"CPU: {cpu_model()}, {os.cpu_count()} core(s), capability {cpu_capability()}; torch {torch.__version__}; "
            f"GPU: {gpu or 'none'}")
