"""Different PE methods in one forward pass: one composite module tree over several row-batched skeletons of a base.

Adapters of different methods (the paper's bottleneck, LoRA, IA3, trained LayerNorms, FC heads ...) trained on one
frozen base share everything but the modules their method added or replaced. `composite_model(models)` walks the
row-batched skeletons (mmf_pe/tuners/batched.py) of such *parts* side by side: a module that is the same in every
part (same class, the same frozen tensors, the same settings) appears once and runs once for the whole batch;
where the parts differ (a `lora.Linear` where another part has a plain `nn.Linear`, a bottleneck-adapted output
block, a trained LayerNorm) a `PartSwitch` runs each part's own module on the rows of that part's adapters
(per-segment work) and puts the outputs back in row order. Row modules keep taking each row's adapter tensors from
`use_rows(...)`, so a shared classifier head still runs per adapter on its rows; nothing is copied and no module
is mutated.

What may differ between parts without a switch: the records a model keeps of how its PE method was built
(`PE_RECORDS`, and a config's PE settings `PE_SETTING_KEYS`); a model's forward reads its modules, not those.
Everything else (plain settings, other config keys, buffers, hooks) must be equal or the module is switched.
Imports no MMF.
"""
import copy
import dataclasses
from typing import Any, List, Sequence

import torch
from torch import nn

from mmf_pe.tuners.batched import current_rows, rows_scope

# attributes recording how a PE method was built (not read by forward passes)
PE_RECORDS = frozenset({"pe_config", "training_mode", "pe_parameter_names", "peft_wrapped_paths", "peft_config",
                        "weights_report"})
PE_SETTING_KEYS = frozenset({"pe", "training_mode"})  # a config's PE settings (whatever layout the `pe:` node has)
_MODULE_STATE = frozenset({"_parameters", "_buffers", "_modules", "training", "_non_persistent_buffers_set"})


def pe_settings_removed(config: Any) -> Any:
    """A config-like object (dict, OmegaConf node, transformers config) as plain data without its PE settings."""
    if hasattr(config, "to_dict") and callable(config.to_dict):
        data = config.to_dict()
    elif type(config).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf

        data = OmegaConf.to_container(config, resolve=False)
    else:
        data = config
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if k not in PE_SETTING_KEYS}
    return data


def _same_value(a, b):
    if a is b:
        return True
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return _same_tensor(a, b) or (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and
                                      a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b)))
    if isinstance(a, nn.Module) or isinstance(b, nn.Module):
        return False  # a module outside `_modules` (e.g. a back reference): only the very same one is the same
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and a == b
    try:
        return bool(pe_settings_removed(a) == pe_settings_removed(b))
    except Exception:  # noqa: BLE001 - values that cannot be compared are not the same
        return False


def _same_tensor(a, b):
    if a is None or b is None:
        return a is b
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.data_ptr() == b.data_ptr()
            and a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype and a.device == b.device)


def _row_leaves(module):
    """A row module's parameters that are only shape records (its trained slots: the rows bring their tensors)."""
    leaves = set()
    for leaf, slot_attr in getattr(module, "slot_attributes", {}).items():
        if getattr(module, slot_attr, None) is not None:
            leaves.add(leaf)
    return leaves


def same_module(modules: Sequence[nn.Module]) -> bool:
    """Whether the modules compute the same function of their inputs, their children aside."""
    first = modules[0]
    for other in modules[1:]:
        if type(other) is not type(first) or list(other._modules) != list(first._modules):
            return False
        if list(other._parameters) != list(first._parameters) or list(other._buffers) != list(first._buffers):
            return False
        slots = _row_leaves(first)
        if slots != _row_leaves(other):
            return False
        if not all(_same_tensor(first._parameters[k], other._parameters[k]) for k in first._parameters
                   if k not in slots):
            return False
        if not all(_same_value(first._buffers[k], other._buffers[k]) for k in first._buffers):
            return False
        names = (set(first.__dict__) | set(other.__dict__)) - _MODULE_STATE - PE_RECORDS
        for name in names:
            a, b = first.__dict__.get(name), other.__dict__.get(name)
            if name.endswith("hooks") or name.endswith("hooks_with_kwargs") or name.endswith("_always_called"):
                if a or b:
                    return False  # hooks run code: a module with any is never merged
                continue
            if not _same_value(a, b):
                return False
    return True


class PartSwitch(nn.Module):
    """Where the parts' modules differ: each part's own module runs on the rows of that part's adapters.

    Tensor arguments with the batch as first dimension (`_split`) are split by rows; the others are passed whole.
    Outputs (tensors; tuples, lists, mappings of them; None) are put back in row order."""

    varies_by_row = True

    def __init__(self, modules, direct=False):
        super().__init__()
        self.parts = nn.ModuleList(modules)
        self.direct = direct  # the composite's root: callers call `.forward` (MMF's `__call__` would add losses)

    def __getattr__(self, name):  # a parent reading an attribute of its child (e.g. `.weight.dtype`): part 0's
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("parts")[0], name)

    def forward(self, *args, **kwargs):
        rows = current_rows()
        batch = len(rows.index)
        out = None
        for part, members in rows.part_groups:
            sub = rows.subset(members)
            module = self.parts[part].forward if self.direct else self.parts[part]
            named = {k: _split(v, members, batch) for k, v in kwargs.items()}
            with rows_scope(sub):
                result = module(*_split(args, members, batch), **named)
            if rows.single_part:
                return result
            out = _merge(out, result, members, batch)
        return out


def _split(value, members, batch, record=False):
    """The rows `members` of an argument: tensors whose first dimension is the batch (with 2+ dimensions, or any
    inside a mapping, i.e. a batch record such as MMF's SampleList); containers element by element."""
    if isinstance(value, torch.Tensor):
        rows = value.dim() >= (1 if record else 2) and value.shape[0] == batch
        return value[members] if rows else value
    if isinstance(value, tuple):
        return tuple(_split(v, members, batch, record) for v in value)
    if isinstance(value, list):
        return [_split(v, members, batch, record) for v in value]
    if isinstance(value, dict):
        part = copy.copy(value)  # keeps a SampleList a SampleList (attribute access included)
        for key, item in value.items():
            part[key] = _split(item, members, batch, record=True)
        return part
    return value


def _merge(out, result, members, batch):
    """Write one part's result into `out` (created on the first part) at its rows."""
    if isinstance(result, torch.Tensor):
        if out is None:
            out = result.new_empty((batch,) + tuple(result.shape[1:]))
        out[members] = result
        return out
    if isinstance(result, (tuple, list)):
        merged = [_merge(None if out is None else out[i], r, members, batch) for i, r in enumerate(result)]
        return type(result)(merged) if isinstance(result, tuple) else merged
    if isinstance(result, dict):
        merged = copy.copy(result)
        for key, item in result.items():
            merged[key] = _merge(None if out is None else out[key], item, members, batch)
        return merged
    if result is None:
        return None
    raise TypeError(f"a module switched per PE method returned {type(result).__name__}; only tensors and tuples, "
                    "lists and mappings of them are put back in row order")


def composite_model(models: Sequence[nn.Module]) -> nn.Module:
    """One module tree over `models` (row-batched skeletons of one base, one per part): shared where they are the
    same, a `PartSwitch` where they differ. Every tensor stays the parts' own; only module trees are new."""
    memo = {}

    def merge(modules):
        key = tuple(id(m) for m in modules)
        if key in memo:
            return memo[key]
        if not same_module(modules):
            memo[key] = PartSwitch(modules, direct=modules is models)
            return memo[key]
        children = {name: [m._modules[name] for m in modules] for name in modules[0]._modules}
        if any(None in kids and any(k is not None for k in kids) for kids in children.values()):
            memo[key] = PartSwitch(modules, direct=modules is models)  # a child some parts lack
            return memo[key]
        clone = memo[key] = copy.copy(modules[0])
        clone._modules = {name: None if kids[0] is None else merge(kids) for name, kids in children.items()}
        return clone

    models = list(models)
    top = merge(models)
    return top.eval()


def switched_paths(model: nn.Module) -> List[str]:
    """The module paths of a composite where the parts run their own modules (what cannot be shared)."""
    return [path for path, module in model.named_modules() if isinstance(module, PartSwitch)]


