"""Mixed-adapter micro-batches on the server: requests for different adapters of one skeleton share a forward pass.

Each `Kind` (one base, one trained-parameter layout) gets, when its method has a batched implementation
(mmf_pe.tuners.batched), a row-batched copy of its skeleton sharing the base tensors. A batch's rows then carry
their own adapter's tensors (each linear runs once per distinct adapter on its rows); nothing is copied into shared
slots and no lock is taken. A kind whose method has none keeps the one-adapter batches (`Kind.put_on` under its
lock), and `mixed_refusal` says why. Adapters of different kinds (other base, other method or settings) never
share a batch.
"""
import logging
import threading

from mmf_pe.tuners import method_settings
from mmf_pe.tuners.batched import NotBatchable, batched_method_name, batched_model, use_rows

log = logging.getLogger("mmf_pe.serve")
_build_lock = threading.Lock()


def method_of(config):
    """The batched-registry key of an adapter's config (`fc` for head-only exports)."""
    mode = config.get("training_mode")
    return batched_method_name(mode, method_settings(config.get("pe"), None)[0] if mode == "pe" else None)


def prepare(kind, config):
    """Build (once) the kind's row-batched model; a method without a batched implementation is logged by name."""
    with _build_lock:
        if kind.mixed_ready:
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
    return kind if kind.mixed is not None else version


def rows_of(versions):
    """(adapter of each row [B ints], {slot: [tensor of each distinct version]}), distinct versions in first-seen
    order; nothing is stacked or copied."""
    order = {}
    index = [order.setdefault(id(v), len(order)) for v in versions]
    distinct = list({id(v): v for v in versions}.values())
    return index, {name: [v.tensors[name] for v in distinct] for name in distinct[0].tensors}


def run(kind, versions, batch, probabilities):
    """`probabilities(model, batch)` on the kind's row-batched model with each row's adapter tensors."""
    index, tensors = rows_of(versions)
    with use_rows(index, tensors):
        return probabilities(kind.mixed, batch)
