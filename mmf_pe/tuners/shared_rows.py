"""Fan-out on a stack of layers: what runs below the lowest adapter runs once per distinct input, not once per row.

A fan-out batch holds one meme B times, each row with another adapter. In a row-batched model (mmf_pe/tuners/
batched.py, composite.py) the family names its *stages*, the modules the hidden states pass through in order (a
VisualBERT: each encoder layer, the pooler, the classifier). `wrap_stages` puts each stage in a `StageRows`; when
the batch was given its distinct inputs only (U rows, `Rows.expand` mapping each of the B rows to one of them), the
stages below the first stage holding anything adapter-specific (a row module, a per-method switch) run on the U
rows, and from that stage on every batch-first argument (hidden states, attention mask) is expanded to the B rows.
`expand_from` finds that stage, or None where sharing is not possible (something adapter-specific outside the stages,
e.g. trained embedding LayerNorms, or above them). Plain torch; nothing is mutated.
"""
from typing import Optional, Sequence

from torch import nn

from mmf_pe.tuners.batched import current_rows


def varies_by_row(module: nn.Module) -> bool:
    """Whether a module computes something adapter-specific (row modules, per-method switches)."""
    return bool(getattr(type(module), "varies_by_row", False))


class StageRows(nn.Module):
    """One stage of a layer stack: at or above the batch's `expand_from`, its batch-first arguments are expanded
    from the distinct inputs to every row."""

    def __init__(self, stage, position):
        super().__init__()
        self.stage, self.position = stage, position

    def __getattr__(self, name):  # a parent reading an attribute of the stage (e.g. a layer's `.attention`)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("stage"), name)

    def forward(self, *args, **kwargs):
        rows = current_rows()
        if rows.expand is not None and self.position >= rows.expand_from:
            distinct = rows.distinct_inputs
            args = tuple(_expanded(a, rows.expand, distinct) for a in args)
            kwargs = {k: _expanded(v, rows.expand, distinct) for k, v in kwargs.items()}
        return self.stage(*args, **kwargs)


def _expanded(value, expand, distinct):
    if hasattr(value, "dim") and value.dim() >= 2 and value.shape[0] == distinct:
        return value[expand.to(value.device)]
    if isinstance(value, (tuple, list)):
        return type(value)(_expanded(v, expand, distinct) for v in value)
    return value


def wrap_stages(model: nn.Module, paths: Sequence[str]) -> nn.Module:
    """Put each stage of `paths` (module paths, in the order the hidden states pass) in a StageRows, in place
    (`model` is a row-batched tree copy, its own modules). Returns the model."""
    for position, path in enumerate(paths):
        parent_path, _, leaf = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, leaf, StageRows(getattr(parent, leaf), position))
    return model


def expand_from(model: nn.Module) -> Optional[int]:
    """The position of the first stage holding something adapter-specific, when every adapter-specific module is
    inside a stage (none above or beside the stack); else None (the batch runs every row throughout)."""
    stages = [(path, m) for path, m in model.named_modules() if isinstance(m, StageRows)]
    if not stages:
        return None
    inside = {id(sub) for _, stage in stages for sub in stage.stage.modules()}
    if any(varies_by_row(m) and id(m) not in inside for m in model.modules()):
        return None  # e.g. trained embedding LayerNorms, or a per-method switch above the stack
    for _, stage in sorted(stages, key=lambda s: s[1].position):
        if any(varies_by_row(m) for m in stage.stage.modules()):
            return stage.position
    return None
