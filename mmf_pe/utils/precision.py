"""One precision switch (`auto | fp32 | bf16 | fp16`) for training, evaluation, prediction, frozen encoders, extraction
and serving, and the one resolver every caller uses: `resolve_precision(requested, device)`.

Mixed precision here means `torch.autocast`: parameters (the master weights), optimiser state, checkpoints and exports
stay fp32; matmuls and convolutions run in the lower type, while autocast keeps LayerNorm, softmax and the losses in
fp32. fp16 also needs a gradient scaler (small gradients underflow in fp16); bf16 has fp32's range and needs none.
fp16 is refused on CPU: CPU kernels for fp16 are slow emulations there, bf16 is the CPU's mixed type.

bf16 only pays where the hardware computes it natively: a CUDA GPU with bf16 (Ampere or newer), or a CPU with
AVX512-BF16 / AMX. Elsewhere it is emulated, and a bf16 matmul on an AVX2-only CPU runs ~50x slower than fp32. So the
resolver measures instead of trusting a flag: on CPU it times a short probe matmul in bf16 and fp32 once per process
(cached) and calls bf16 native only when the CPU advertises bf16 instructions and the probe runs faster in bf16.
`auto` then picks bf16 where native, fp16 + a gradient scaler on a CUDA GPU without bf16, fp32 otherwise; an explicit
`bf16` where it is emulated is kept (the caller asked) but warned about with the measured slowdown factor.
"""
import contextlib
import dataclasses
import functools
import logging
import time
from typing import Optional

import torch

from mmf_pe.utils import hardware

PRECISIONS = ("fp32", "bf16", "fp16")
REQUESTS = ("auto",) + PRECISIONS
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PROBE_SIZE = 256  # a 256^3 matmul: ~0.3 ms in fp32, ~15 ms in emulated bf16 on one core
NATIVE_RATIO = 1.0  # bf16 counts as native only when the probe runs faster in bf16 than in fp32

logger = logging.getLogger("mmf_pe.precision")


class PrecisionError(ValueError):
    """A precision that is unknown, contradictory or impossible on the device."""


@dataclasses.dataclass(frozen=True)
class PrecisionDecision:
    """What `resolve_precision` chose and why; `as_dict()` is what run metadata records."""

    requested: str  # auto | fp32 | bf16 | fp16, as asked
    name: str  # fp32 | bf16 | fp16: what runs
    device: str  # cpu | cuda | ...
    native_bf16: Optional[bool]  # None: not checked (fp32 / fp16 asked for explicitly)
    capability: str  # the CPU's capability or the GPU's name
    probe_ratio: Optional[float]  # bf16 time / fp32 time of the probe matmul; None: not measured
    reason: str
    warning: Optional[str] = None

    @property
    def dtype(self):
        return DTYPES[self.name]

    @property
    def needs_grad_scaler(self):
        return self.name == "fp16"

    def as_dict(self):
        return dataclasses.asdict(self)

    def describe(self):
        """One line for a run log: the choice, the reason (with the probe), the hardware."""
        line = (f"Precision: {self.name} (requested {self.requested}) on {self.device}: {self.reason}; "
                f"capability {self.capability}")
        return line + (f". WARNING: {self.warning}" if self.warning else "")


def requested_precision(training_config):
    """`training.precision` (auto | fp32 | bf16 | fp16), with MMF main's `training.fp16: true` as an alias of fp16."""
    get = training_config.get if hasattr(training_config, "get") else (lambda key, default=None: default)
    precision = str(get("precision", None) or "fp32").lower()
    if precision not in REQUESTS:
        raise PrecisionError(f"training.precision={precision!r} is not one of {', '.join(REQUESTS)}")
    fp16 = get("fp16", False)
    if str(fp16).strip().lower() in ("1", "true", "yes", "on"):
        if precision not in ("fp32", "fp16"):
            raise PrecisionError(f"training.fp16=true contradicts training.precision={precision}; set only one")
        precision = "fp16"
    return precision


def device_type(device):
    device = torch.device(device) if not isinstance(device, torch.device) else device
    return device.type


def _timed_matmul(a, b, synchronize):
    started = time.perf_counter()
    torch.mm(a, b)
    synchronize()
    return time.perf_counter() - started


@functools.lru_cache(maxsize=None)
def probe_bf16_ratio(kind="cpu", size=PROBE_SIZE, repeats=3):
    """bf16 time / fp32 time of one size x size matmul on device type `kind` (best of `repeats`, interleaved, after a
    warm-up): < 1 where bf16 is native, ~50 on an AVX2-only CPU. Measured once per process (cached)."""
    synchronize = torch.cuda.synchronize if kind == "cuda" else (lambda: None)
    generator = torch.Generator().manual_seed(0)
    a32 = torch.randn(size, size, generator=generator).to(kind)
    b32 = torch.randn(size, size, generator=generator).to(kind)
    a16, b16 = a32.to(torch.bfloat16), b32.to(torch.bfloat16)
    best = {"fp32": float("inf"), "bf16": float("inf")}
    _timed_matmul(a32, b32, synchronize), _timed_matmul(a16, b16, synchronize)  # warm-up (kernel selection)
    for _ in range(repeats):
        best["fp32"] = min(best["fp32"], _timed_matmul(a32, b32, synchronize))
        best["bf16"] = min(best["bf16"], _timed_matmul(a16, b16, synchronize))
    return best["bf16"] / max(best["fp32"], 1e-9)


def bf16_support(device):
    """(native, capability, probe ratio) of `device`. CUDA: the GPU's own bf16 support (probed only where it lacks
    it, for the slowdown factor); CPU: advertised bf16 instructions (unknown counts as possible) and a faster probe."""
    kind = device_type(device)
    if kind == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return native, hardware.gpu_description(device), (None if native else probe_bf16_ratio("cuda"))
    if kind == "cpu":
        flags = hardware.cpu_bf16_flags()
        ratio = probe_bf16_ratio("cpu")
        return (flags is None or bool(flags)) and ratio < NATIVE_RATIO, hardware.cpu_capability(), ratio
    return False, kind, None


def resolve_precision(requested, device):
    """The precision to run in on `device` for a request (auto | fp32 | bf16 | fp16), as a PrecisionDecision.

    Raises PrecisionError for an unknown request and for fp16 off CUDA; an explicit bf16 without native support is
    kept but logged as a warning (logger `mmf_pe.precision`) naming the measured slowdown."""
    requested = str(requested or "fp32").lower()
    if requested not in REQUESTS:
        raise PrecisionError(f"precision {requested!r} is not one of {', '.join(REQUESTS)}")
    kind = device_type(device)
    if requested == "fp16" and kind != "cuda":
        raise PrecisionError(
            f"precision fp16 is refused on {kind}: fp16 autocast needs a CUDA GPU (on a CPU its kernels are slow "
            "emulations and the gradient scaler only hides underflow). Use precision bf16 on CPU, or fp32.")
    decide = functools.partial(PrecisionDecision, requested=requested, device=kind)
    if requested in ("fp32", "fp16"):
        where = hardware.gpu_description(device) if kind == "cuda" else hardware.cpu_capability()
        return decide(name=requested, native_bf16=None, capability=where, probe_ratio=None, reason="as requested")
    native, capability, ratio = bf16_support(device)
    probe = "" if ratio is None else f" (probe: bf16 {ratio:.2f}x fp32's time)"
    if native:
        why = "native bf16" + probe
        return decide(name="bf16", native_bf16=True, capability=capability, probe_ratio=ratio,
                      reason=why if requested == "bf16" else f"auto: {why}")
    if requested == "bf16":
        factor = f"a probe matmul ran {ratio:.1f}x slower in bf16 than in fp32" if ratio else "bf16 is emulated"
        warning = (f"precision bf16 on {kind} without native bf16 ({capability}): {factor}, so this will run "
                   "slower than fp32. Use precision auto (it picks what this hardware computes natively) or fp32.")
        logger.warning(warning)
        return decide(name="bf16", native_bf16=False, capability=capability, probe_ratio=ratio,
                      reason="as requested, emulated" + probe, warning=warning)
    if kind == "cuda":
        return decide(name="fp16", native_bf16=False, capability=capability, probe_ratio=ratio,
                      reason="auto: no native bf16 on this GPU, fp16 with a gradient scaler")
    return decide(name="fp32", native_bf16=False, capability=capability, probe_ratio=ratio,
                  reason=f"auto: no native bf16 on {kind}{probe}")


def autocast(precision, device):
    """The autocast context for `precision` on `device` (a no-op context for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type(device), dtype=DTYPES[precision])


def make_grad_scaler(precision, device):
    """An enabled `torch.amp.GradScaler` for fp16, else None (bf16 and fp32 need no scaling)."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device_type(device))


def outputs_to_fp32(value):
    """Floating tensors (in dicts / lists, recursively) cast to fp32: scores leave the model in fp32 so losses, metrics
    and numpy conversions (numpy has no bfloat16) see the type they expect."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    if isinstance(value, dict):
        for key in list(value.keys()):
            value[key] = outputs_to_fp32(value[key])
        return value
    if isinstance(value, (list, tuple)):
        cast = [outputs_to_fp32(v) for v in value]
        return type(value)(cast) if isinstance(value, list) else tuple(cast)
    return value


def install_fp32_outputs(model):
    """A forward hook making `model`'s outputs fp32 (idempotent). MMF's BaseModel computes its losses after
    `nn.Module.__call__` returns, so they see the fp32 scores."""
    if getattr(model, "_mmf_pe_fp32_outputs", None) is None:
        model._mmf_pe_fp32_outputs = model.register_forward_hook(lambda module, args, output: outputs_to_fp32(output))
    return model


def hardware_header(device="cpu"):
    """A benchmark table's header line: the machine (`hardware.hardware_summary`) and whether bf16 is native on
    `device`, with the probe's bf16/fp32 time ratio, so every table says what it was measured on."""
    native, _, ratio = bf16_support(device)
    probe = "" if ratio is None else f", probe matmul bf16/fp32 time {ratio:.2f}x"
    return f"{hardware.hardware_summary()}; bf16 on {device_type(device)}: {'native' if native else 'emulated'}{probe}"
