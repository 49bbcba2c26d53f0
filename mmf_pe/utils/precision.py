"""One precision switch (`fp32 | bf16 | fp16`) for training, evaluation, prediction, frozen encoders and serving.

Mixed precision here means `torch.autocast`: parameters (the master weights), optimiser state, checkpoints and exports
stay fp32; matmuls and convolutions run in the lower type, while autocast keeps LayerNorm, softmax and the losses in
fp32. fp16 also needs a gradient scaler (small gradients underflow in fp16); bf16 has fp32's range and needs none.
fp16 is refused on CPU: CPU kernels for fp16 are slow emulations there, bf16 is the CPU's mixed type.
"""
import contextlib
import functools
import warnings

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(ValueError):
    """A precision that is unknown, contradictory or impossible on the device."""


def resolve_precision(training_config):
    """`training.precision`, with MMF main's `training.fp16: true` accepted as an alias of `fp16`."""
    get = training_config.get if hasattr(training_config, "get") else (lambda key, default=None: default)
    precision = str(get("precision", None) or "fp32").lower()
    if precision not in PRECISIONS:
        raise PrecisionError(f"training.precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    if bool(get("fp16", False)):
        if precision not in ("fp32", "fp16"):
            raise PrecisionError(f"training.fp16=true contradicts training.precision={precision}; set only one")
        precision = "fp16"
    return precision


def device_type(device):
    device = torch.device(device) if not isinstance(device, torch.device) else device
    return device.type


def check_precision(precision, device, warn=True):
    """Refuse what a device cannot do (fp16 on CPU); warn about what it does slowly. Returns the precision."""
    kind = device_type(device)
    if precision == "fp16" and kind != "cuda":
        raise PrecisionError(
            f"precision fp16 is refused on {kind}: fp16 autocast needs a CUDA GPU (on a CPU its kernels are slow "
            "emulations and the gradient scaler only hides underflow). Use precision bf16 on CPU, or fp32.")
    if precision == "bf16" and warn:
        if kind == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
            warnings.warn(f"precision bf16 on {torch.cuda.get_device_name(device)}: this GPU has no native bf16 "
                          "(before Ampere); it is emulated and slower than fp32. Use fp16 or fp32 there.")
        elif kind == "cpu" and not cpu_has_native_bf16():
            warnings.warn("precision bf16 on a CPU without AVX512-BF16 / AMX instructions: bf16 matmuls are "
                          "converted to fp32 and usually run slower than plain fp32. Use fp32 on this CPU.")
    return precision


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16():
    """True when the CPU has bf16 dot-product instructions (AVX512-BF16 or AMX-BF16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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
