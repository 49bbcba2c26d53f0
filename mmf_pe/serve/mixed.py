"""Mixed-adapter micro-batches on the server: requests for different adapters of one base share a forward pass.

Each `Kind` (one base, one trained-parameter layout: a method and its settings) gets, when its method has a batched
implementation (mmf_pe.tuners.batched), a row-batched copy of its skeleton sharing the base tensors. A batch's rows
then carry their own adapter's tensors (each linear runs once per distinct adapter on its rows); nothing is copied
into shared slots and no lock is taken. Rows of different batched kinds of one base (the paper's adapter, LoRA, IA3,
FC heads ...) share a batch too: a composite of their skeletons (mmf_pe.tuners.composite, built once per set of
kinds) runs what they share once and each kind's own modules on its rows. A kind whose method has no batched
implementation keeps one-adapter batches (`Kind.put_on` under its lock), and `mixed_refusal` says why. Adapters of
different bases never share a batch (Full-mode exports are not served).
"""
import logging
import threading
from collections import OrderedDict

from mmf_pe.tuners import method_settings
from mmf_pe.tuners.batched import NotBatchable, batched_method_name, batched_model, use_rows
from mmf_pe.tuners.composite import composite_model
from mmf_pe.tuners.shared_rows import expand_from, wrap_stages

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
            stages = kind.base.row_stages(kind.model)
            if stages:
                kind.mixed_expand_from = expand_from(wrap_stages(kind.mixed, stages))
        except NotBatchable as error:
            kind.mixed, kind.mixed_refusal = None, str(error)
            log.info("%s", error)
        except Exception as error:  # noqa: BLE001 - a model the row copy cannot handle still serves, unmixed
            kind.mixed, kind.mixed_refusal = None, f"no mixed batches for this model: {error}"
            log.warning("%s", kind.mixed_refusal)
        kind.mixed_ready = True
    return kind


MAX_COMPOSITES = 64  # composites kept per base (one per set of kinds met in a batch; a few module trees each)


def group_of(version):
    """What a request may share a batch with: every batched adapter of its base, else its version alone."""
    kind = version.kind
    return kind.base if kind.mixed is not None else version


def part_order(versions):
    """The kinds of a batch (a canonical order) and the row order that puts each kind's rows, then each version's,
    side by side (contiguous rows are sliced, not gathered)."""
    kinds = sorted({id(v.kind): v.kind for v in versions}.values(), key=lambda k: (str(k.key), id(k)))
    part = {id(k): i for i, k in enumerate(kinds)}
    first = {}
    for position, version in enumerate(versions):
        first.setdefault(id(version), position)
    order = sorted(range(len(versions)), key=lambda r: (part[id(versions[r].kind)], first[id(versions[r])]))
    return kinds, order


def rows_of(versions, kinds=None):
    """(adapter of each row [B ints], {slot: [tensor of each distinct version, None where it has no such slot]},
    part of each distinct version), distinct versions in first-seen order; nothing is stacked or copied."""
    order = {}
    index = [order.setdefault(id(v), len(order)) for v in versions]
    distinct = list({id(v): v for v in versions}.values())
    names = dict.fromkeys(name for v in distinct for name in v.tensors)
    tensors = {name: [v.tensors.get(name) for v in distinct] for name in names}
    part = {id(k): i for i, k in enumerate(kinds or [])}
    return index, tensors, [part.get(id(v.kind), 0) for v in distinct]


def composite_for(kinds):
    """The composite model of these kinds of one base and its first stage run per row (built once per set of
    kinds, LRU-bounded per base)."""
    base = kinds[0].base
    key = tuple(id(k) for k in kinds)
    with _build_lock:
        cache = base.__dict__.setdefault("mixed_composites", OrderedDict())
        built = cache.get(key)
        if built is not None:
            cache.move_to_end(key)
            return built
    model = composite_model([k.mixed for k in kinds])
    built = (model, expand_from(model))
    with _build_lock:
        cache[key] = built
        while len(cache) > MAX_COMPOSITES:
            cache.popitem(last=False)
    return built


def model_for(kinds):
    """(model, first stage run per row or None) of a batch of these kinds."""
    if len(kinds) == 1:
        return kinds[0].mixed, kinds[0].mixed_expand_from
    return composite_for(kinds)


def distinct_inputs(texts, inputs):
    """(positions of the distinct (text, input) pairs, each row's distinct position): a fan-out's rows hold one
    prepared input object and one text."""
    seen, firsts, expand = {}, [], []
    for row, (text, given) in enumerate(zip(texts, inputs)):
        key = (text, id(given))
        if key not in seen:
            seen[key] = len(firsts)
            firsts.append(row)
        expand.append(seen[key])
    return firsts, expand


def run(kinds, versions, batch, probabilities, expand=None):
    """`probabilities(model, batch)` with each row's adapter tensors: on the kind's row-batched model, or on the
    composite of several kinds (rows ordered by `part_order`). `expand`: the batch holds the distinct inputs only,
    `expand[row]` the one of each row (used only where the model shares stages: `model_for`)."""
    import torch

    index, tensors, part_of = rows_of(versions, kinds)
    model, first_per_row = model_for(kinds)
    if expand is not None:
        expand = torch.tensor(expand, dtype=torch.long)
    with use_rows(index, tensors, part_of, expand, first_per_row if expand is not None else None):
        return probabilities(model, batch)
