"""Content fingerprints of weights: what adapter exports and the CLIP embedding cache use to know "the same model"."""
import hashlib

import torch


def tensors_digest(named_tensors, hasher=None):
    """Hex digest over each tensor's name, shape, dtype and bytes, in name order (sha256 unless a hasher is given)."""
    hasher = hashlib.sha256() if hasher is None else hasher
    for name in sorted(named_tensors):
        tensor = named_tensors[name].detach().contiguous().cpu()
        hasher.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}\n".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def tensor_digests(named_tensors, length=16):
    """{name: hex digest (first `length` hex digits of sha256)} of each tensor alone: names what differs when the
    combined digest does not match."""
    return {name: tensors_digest({name: tensor})[:length] for name, tensor in sorted(named_tensors.items())}
