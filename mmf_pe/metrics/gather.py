"""Gather per-process predictions into the whole evaluation set (torch.distributed; any backend, any world size)."""
import numpy as np
import torch
import torch.distributed as dist


def _group_active():
    return dist.is_available() and dist.is_initialized()


def get_world_size():
    """World size of the default process group; 1 without one (rc10's helper says 1 whenever NCCL is missing)."""
    return dist.get_world_size() if _group_active() else 1


def get_rank():
    return dist.get_rank() if _group_active() else 0


def is_main_process():
    return get_rank() == 0


def _to_numpy(value):
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def gather_predictions(scores, targets, ids=None):
    """All processes' (scores, targets, ids) concatenated in rank order, as numpy arrays, on every process.

    Every process of the group must call this (it is a collective). With ids, repeated ids are dropped (first
    occurrence kept): DistributedSampler pads the last round with samples that another process already scored.
    Without a process group it only converts to numpy.
    """
    local = {"scores": _to_numpy(scores), "targets": _to_numpy(targets), "ids": _to_numpy(ids)}
    if get_world_size() > 1:
        parts = [None] * get_world_size()
        dist.all_gather_object(parts, local)
    else:
        parts = [local]
    scores = np.concatenate([p["scores"] for p in parts], axis=0)
    # An unlabelled split (targets None on every process) still gathers its scores and ids.
    targets = None if all(p["targets"] is None for p in parts) else np.concatenate([p["targets"] for p in parts], 0)
    if any(p["ids"] is None for p in parts):
        return scores, targets, None
    ids = np.concatenate([p["ids"].reshape(len(p["scores"]), -1)[:, 0] for p in parts], axis=0)
    if len(parts) > 1:
        _, first = np.unique(ids, return_index=True)
        keep = np.sort(first)
        scores, ids = scores[keep], ids[keep]
        targets = None if targets is None else targets[keep]
    return scores, targets, ids
