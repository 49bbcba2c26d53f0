"""Mixed-adapter micro-batches on the server: requests for different adapters of one skeleton share a forward pass.

Each `Kind` (one base, one trained-parameter layout) gets, when its method has a batched implementation
(mmf_pe.tuners.batched), a row-batched copy of its skeleton sharing the base tensors. A batch's rows then carry
their own adapter's tensors (stacked once per batch, distinct adapters only); nothing is copied into shared slots and
no lock is taken. A kind whose method has none keeps the one-adapter batches (`Kind.put_on` under its lock), and
`refusal` says why. Adapters of different kinds (other base, other method or settings) never share a batch.
"""
import logging
import threading

import torch

from mmf_pe.tuners.batched import NotBatchable, batched_method_name, batched_model, use_rows

log = logging.getLogger("mmf_pe.serve")
_build_lock = threading.Lock()


def method_of(config):
    """The batched-registry key of an adapter's config (`fc` for head-only exports)."""
    mode = config.get("training_mode")
    return batched_method_name(mode, (config.get("pe") or {}).get("method") if mode == "pe" else None)


def prepare(kind, config):
    """Build (once) the kind's row-batched model; a method without a batched implementation is logged by name."""
    with _build_lock:
        if getattr(kind, "mixed_ready", False):
            return kind
        try:
            kind.mixed, kind.mixed_refusal = batched_model(kind.model, kind.slots, method_of(config)), None
        except NotBatchable as error:
            kind.mixed, kind.mixed_refusal = None, str(error)
            log.info("%s", error)
        except Exception as error:  # noqa: BLE001 - a model the row copy cannot handle still serves, unmixed
            kind.mixed, kind.mixed_refusal = None, f"no mixed batches for this model: {error}"
            log.warning("%s", kind.mixed_refusal)
        kind.mixed_ready = True
    return kind


def group_of(version):
    """What a request may share a batch with: its kind when the kind batches mixed adapters, else its version."""
    kind = version.kind
    return kind if getattr(kind, "mixed", None) is not None else version


def stacked(versions):
    """(row index (B,), {slot: (U, ...)}) over the distinct versions of a batch, in first-seen order."""
    order = {}
    index = torch.tensor([order.setdefault(id(v), len(order)) for v in versions], dtype=torch.long)
    distinct = list({id(v): v for v in versions}.values())
    if len(distinct) == 1:
        return index, {name: tensor[None] for name, tensor in distinct[0].tensors.items()}
    names = distinct[0].tensors
    return index, {name: torch.stack([v.tensors[name] for v in distinct]) for name in names}


def run(kind, versions, batch, probabilities, index_device):
    """`probabilities(model, batch)` on the kind's row-batched model with each row's adapter tensors."""
    index, tensors = stacked(versions)
    with use_rows(index.to(index_device), tensors):
        return probabilities(kind.mixed, batch)
