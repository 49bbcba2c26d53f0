"""Which tensors hold NaN or inf: what keeps a poisoned model out of a saved checkpoint."""
import torch


class NonFiniteError(FloatingPointError):
    """A loss or a tensor about to be saved is NaN or infinite."""


def nonfinite_tensors(named_tensors, prefix=""):
    """Names of the floating-point tensors in a (nested) dict / list that hold a NaN or an inf, in order."""
    found = []
    if isinstance(named_tensors, torch.Tensor):
        if named_tensors.is_floating_point() and not bool(torch.isfinite(named_tensors).all()):
            found.append(prefix or "<tensor>")
    elif isinstance(named_tensors, dict):
        for key, value in named_tensors.items():
            found += nonfinite_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(named_tensors, (list, tuple)):
        for index, value in enumerate(named_tensors):
            found += nonfinite_tensors(value, f"{prefix}[{index}]")
    return found
