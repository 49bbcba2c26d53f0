"""Gather per-process predictions into the whole evaluation set (torch.distributed; any backend, any world size)."""
import warnings

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


def gather_predictions(scores, targets, ids=None, num_samples=None):
    """All processes' (scores, targets, ids) on every process, as numpy arrays. Every process must call this.

    `num_samples` (the evaluated split's length) identifies rows by position: rc10 evaluates through a
    DistributedSampler (no shuffle), which gives rank r the padded positions r, r+W, r+2W, ... and pads the split to
    a multiple of W by repeating its first samples; the rows at padded positions >= num_samples are dropped and the rest
    come back in the split's order, so a split whose annotations repeat an id keeps every row (as in 1 process).
    Without `num_samples` the padding is recognised by id instead (repeated ids dropped, first kept; legacy callers).
    Repeated ids in the result are warned about by name. Without a process group it only converts to numpy.
    """
    local = {"scores": _to_numpy(scores), "targets": _to_numpy(targets), "ids": _to_numpy(ids)}
    world_size = get_world_size()
    if world_size > 1:
        parts = [None] * world_size
        dist.all_gather_object(parts, local)
    else:
        parts = [local]
    for part in parts:
        if part["ids"] is not None:
            part["ids"] = part["ids"].reshape(len(part["scores"]), -1)[:, 0]
    if len(parts) > 1 and num_samples is not None and len({len(p["scores"]) for p in parts}) == 1:
        order = _padded_positions(len(parts), len(parts[0]["scores"]), int(num_samples))
        parts = [{k: (None if v is None else v[order[r]]) for k, v in p.items()} for r, p in enumerate(parts)]
        positions = np.concatenate([order[r] * len(parts) + r for r in range(len(parts))])
        rows = np.argsort(positions, kind="stable")
        scores, targets, ids = _concatenate(parts)
        scores, targets, ids = _take(rows, scores, targets, ids)
    else:
        scores, targets, ids = _concatenate(parts)
        if len(parts) > 1 and ids is not None:
            _, first = np.unique(ids, return_index=True)
            scores, targets, ids = _take(np.sort(first), scores, targets, ids)
    if ids is not None and is_main_process():
        warn_repeated_ids(ids)
    return scores, targets, ids


def _padded_positions(world_size, per_rank, num_samples):
    """Per rank, the local row indices whose padded position (row * W + rank) lies inside the split."""
    return [np.array([j for j in range(per_rank) if j * world_size + r < num_samples], dtype=np.int64)
            for r in range(world_size)]


def _concatenate(parts):
    scores = np.concatenate([p["scores"] for p in parts], axis=0)
    # An unlabelled split (targets None on every process) still gathers its scores and ids.
    targets = None if all(p["targets"] is None for p in parts) else np.concatenate([p["targets"] for p in parts], 0)
    ids = None if any(p["ids"] is None for p in parts) else np.concatenate([p["ids"] for p in parts], axis=0)
    return scores, targets, ids


def _take(rows, scores, targets, ids):
    return scores[rows], (None if targets is None else targets[rows]), (None if ids is None else ids[rows])


def warn_repeated_ids(ids):
    """A warning naming the ids that occur more than once in an evaluated split (each row is still scored)."""
    values, counts = np.unique(ids, return_counts=True)
    repeated = [(v.item() if hasattr(v, "item") else v, int(c)) for v, c in zip(values, counts) if c > 1]
    if repeated:
        shown = ", ".join(f"{v} ({c} rows)" for v, c in repeated[:10])
        more = f" and {len(repeated) - 10} more" if len(repeated) > 10 else ""
        warnings.warn(f"evaluated split repeats ids: {shown}{more}; every row is scored, as in its annotations",
                      stacklevel=3)
    return repeated
