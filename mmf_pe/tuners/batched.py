"""Mixed-adapter batches: one forward pass where each row of the batch carries its own adapter's tensors.

A served skeleton (one model over a base's shared frozen tensors) has its module tree copied once (every tensor
shared), and each module that owns a trained slot is replaced by a *row* module: `RowLinear` (bottleneck down/up,
LoRA's A and B, classifier heads), `RowLayerNorm` (trained LayerNorms: Houlsby, heads) and `RowIA3Linear` (IA3's
scales). A row module reads the batch's tensors from `use_rows(...)` (a context variable set by the caller for one
forward), so no module is mutated while serving: a linear or LayerNorm runs once per distinct adapter of the
batch on that adapter's rows (no weight gathered or copied), IA3's scale vectors are assembled per row; plain torch,
no custom kernel. A batch of a single adapter is one ordinary `F.linear` / `F.layer_norm` call.

Which row modules a method needs is registered beside the method (`register_batched(name, handlers)` in its
folder's `__init__.py`); `batched_model` refuses, by name, a method with no registered implementation or a slot no
handler covers, and its adapters are then scored one adapter per batch. Imports no MMF.
"""
import contextlib
import contextvars
import copy

import torch
import torch.nn.functional as F
from torch import nn

HEAD_ONLY = "fc"  # the key of adapters that train no PE method (fc mode: classifier head only)
BATCHED = {}  # method name -> tuple of handlers (module, path, slots) -> row module or None
_ROWS = contextvars.ContextVar("mmf_pe_rows", default=None)


class NotBatchable(ValueError):
    """A skeleton whose adapters cannot share a mixed batch (the message says which method or slot, and why)."""


class Rows:
    """One batch's adapter tensors: `tensors[name]` lists the tensor of each of the U distinct adapters (None for an
    adapter without that slot), `index` (B ints) the adapter of each row. `groups`: (adapter, rows) with rows a
    slice where they are contiguous. `part_of` (U ints, optional): the part (the skeleton of one method and its
    settings, mmf_pe/tuners/composite.py) of each adapter; `part_groups`: (part, rows). `expand` (a LongTensor of
    B row positions into the batch's `distinct_inputs` inputs, optional): the model was given each distinct input
    once, and the stages from `expand_from` on take every row (mmf_pe/tuners/shared_rows.py)."""

    def __init__(self, index, tensors, part_of=None, expand=None, expand_from=None):
        self.index, self.tensors = list(index), tensors
        self.part_of = part_of
        self.expand, self.expand_from = expand, expand_from
        self.distinct_inputs = None if expand is None else int(expand.max()) + 1
        self.single = len(set(self.index)) <= 1
        self.first = self.index[0] if self.index else 0
        self.groups = _grouped(self.index)
        self.part_groups = _grouped([0 if part_of is None else part_of[a] for a in self.index])
        self.single_part = len(self.part_groups) <= 1

    def subset(self, members):
        """The Rows of the batch rows `members` (a slice or a LongTensor of row positions)."""
        positions = range(len(self.index))[members] if isinstance(members, slice) else members.tolist()
        return Rows([self.index[r] for r in positions], self.tensors, self.part_of)

    def get(self, slot, adapter, fixed):
        return fixed if slot is None else self.tensors[slot][adapter]

    def per_row(self, slot, like):
        """(B, D) of a vector slot, each row its adapter's (vectors only: a cheap copy)."""
        out = like.new_empty((len(self.index), self.tensors[slot][self.first].numel()))
        for adapter, part in self.groups:
            out[part] = self.tensors[slot][adapter].reshape(-1).to(out.dtype)
        return out


def _grouped(keys):
    rows = {}
    for row, key in enumerate(keys):
        rows.setdefault(key, []).append(row)
    return [(key, _rows_of(members)) for key, members in rows.items()]


def _rows_of(members):
    if members == list(range(members[0], members[-1] + 1)):
        return slice(members[0], members[-1] + 1)
    return torch.tensor(members, dtype=torch.long)


@contextlib.contextmanager
def use_rows(index, tensors, part_of=None, expand=None, expand_from=None):
    """Make `Rows(...)` the tensors of every row module run inside the block (this context only)."""
    with rows_scope(Rows(index, tensors, part_of, expand, expand_from)):
        yield


@contextlib.contextmanager
def rows_scope(rows):
    token = _ROWS.set(rows)
    try:
        yield
    finally:
        _ROWS.reset(token)


def current_rows():
    rows = _ROWS.get()
    if rows is None:
        raise RuntimeError("a row module ran outside use_rows(...): no adapter tensors for this batch")
    return rows


def _per_segment(rows, x, run):
    """`run(x[part], adapter)` for each adapter's rows, put back in row order (one call when all rows share one)."""
    if rows.single:
        return run(x, rows.first)
    out = None
    for adapter, part in rows.groups:
        result = run(x[part], adapter)
        if out is None:
            out = result.new_empty((x.shape[0],) + tuple(result.shape[1:]))
        out[part] = result
    return out


def _broadcast(values, x):
    """(B, D) values shaped to multiply x (B, ..., D) row by row."""
    return values.reshape(values.shape[0], *([1] * (x.dim() - 2)), values.shape[-1])


class RowLinear(nn.Module):
    """An nn.Linear whose trained weight / bias are each row's own (one matmul per distinct adapter of the batch:
    no weight is gathered or copied)."""

    varies_by_row = True  # adapter-specific (mmf_pe/tuners/shared_rows.py)

    slot_attributes = {"weight": "weight_slot", "bias": "bias_slot"}  # parameters kept as shape records only

    def __init__(self, linear, weight_slot, bias_slot):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias  # shape / dtype (peft reads `.weight.dtype`); shared
        self.weight_slot, self.bias_slot = weight_slot, bias_slot
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x):
        rows = current_rows()
        return _per_segment(rows, x, lambda part, a: F.linear(part, rows.get(self.weight_slot, a, self.weight),
                                                              rows.get(self.bias_slot, a, self.bias)))


class RowLayerNorm(nn.Module):
    """An nn.LayerNorm whose trained scale / shift are each row's own."""

    varies_by_row = True  # adapter-specific (mmf_pe/tuners/shared_rows.py)

    slot_attributes = {"weight": "weight_slot", "bias": "bias_slot"}

    def __init__(self, norm, weight_slot, bias_slot):
        super().__init__()
        self.weight, self.bias = norm.weight, norm.bias
        self.weight_slot, self.bias_slot = weight_slot, bias_slot
        self.normalized_shape, self.eps = norm.normalized_shape, norm.eps

    def forward(self, x):
        rows = current_rows()
        return _per_segment(rows, x, lambda part, a: F.layer_norm(
            part, self.normalized_shape, rows.get(self.weight_slot, a, self.weight),
            rows.get(self.bias_slot, a, self.bias), self.eps))


class RowIA3Linear(nn.Module):
    """peft's IA3 Linear (its frozen `base_layer` kept, run once for the batch) with each row's own scaling vector."""

    varies_by_row = True  # adapter-specific (mmf_pe/tuners/shared_rows.py)

    def __init__(self, layer, slot):
        super().__init__()
        self.base_layer, self.slot, self.is_feedforward = layer.base_layer, slot, layer.is_feedforward

    def forward(self, x, *args, **kwargs):
        rows = current_rows()
        if self.is_feedforward:
            scales = rows.per_row(self.slot, x)
            return self.base_layer(x * _broadcast(scales, x), *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        return result * _broadcast(rows.per_row(self.slot, result), result)


def _own_slots(path, module, slots):
    """{leaf: full slot name} of `module`'s direct parameters that are trained slots."""
    prefix = f"{path}." if path else ""
    return {leaf: prefix + leaf for leaf, _ in module.named_parameters(recurse=False) if prefix + leaf in slots}


def row_linear(module, path, slots):
    if type(module) is not nn.Linear:
        return None
    own = _own_slots(path, module, slots)
    return RowLinear(module, own.get("weight"), own.get("bias")) if own else None


def row_layer_norm(module, path, slots):
    if type(module) is not nn.LayerNorm:
        return None
    own = _own_slots(path, module, slots)
    return RowLayerNorm(module, own.get("weight"), own.get("bias")) if own else None


def row_ia3(module, path, slots):
    """peft's IA3 Linear with one adapter (`default`); its base layer stays shared."""
    if type(module).__name__ != "Linear" or not hasattr(module, "ia3_l"):
        return None
    slot = f"{path}.ia3_l.default"
    if slot not in slots or set(module.ia3_l) != {"default"}:
        return None
    return RowIA3Linear(module, slot)


BOTTLENECK_HANDLERS = (row_linear, row_layer_norm)  # bottleneck down/up, trained LayerNorms, heads
LORA_HANDLERS = (row_linear, row_layer_norm)        # peft's lora_A / lora_B are plain nn.Linear
IA3_HANDLERS = (row_ia3, row_linear, row_layer_norm)


def register_batched(method, handlers):
    """Register the row modules a PE method's adapters need to share a mixed batch (call beside the method)."""
    BATCHED[method] = tuple(handlers)


def batched_method_name(training_mode, method):
    return HEAD_ONLY if training_mode == HEAD_ONLY else method


def _tree_copy(module, memo):
    """A copy of the module tree only: every parameter, buffer and other attribute (caches, configs) is shared;
    only the `_modules` dicts are new, so replacing a submodule of the copy leaves `module` untouched."""
    if id(module) in memo:
        return memo[id(module)]
    clone = memo[id(module)] = copy.copy(module)
    clone._modules = {name: None if child is None else _tree_copy(child, memo)
                      for name, child in module._modules.items()}
    return clone


def batched_model(model, slots, method):
    """A copy of `model`'s module tree (every tensor shared, none copied) whose slot-owning modules are row modules.

    `slots`: {name: parameter} of the trained tensors; `method`: the registry key (`HEAD_ONLY` for fc). Raises
    NotBatchable naming the method or the first slot no handler covers."""
    handlers = BATCHED.get(method)
    if handlers is None:
        raise NotBatchable(f"pe.method {method!r} has no batched implementation (register_batched in "
                           f"mmf_pe.tuners.batched); its adapters are scored one adapter per batch")
    mixed = _tree_copy(model, {})
    covered = set()
    for path, module in list(mixed.named_modules()):
        if not path:
            continue
        for handler in handlers:
            row = handler(module, path, slots)
            if row is None:
                continue
            parent_path, _, leaf = path.rpartition(".")
            setattr(mixed.get_submodule(parent_path) if parent_path else mixed, leaf, row)
            covered |= {name for name in slots if name.startswith(path + ".")}
            break
    left = sorted(set(slots) - covered)
    if left:
        raise NotBatchable(f"pe.method {method!r}: its batched implementation covers no module owning {left[0]} "
                           f"({len(left)} slots uncovered); its adapters are scored one adapter per batch")
    return mixed.eval()


register_batched(HEAD_ONLY, BOTTLENECK_HANDLERS)
