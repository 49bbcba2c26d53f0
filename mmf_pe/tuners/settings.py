"""What a model's config says about PE: the method and its settings, and the training mode. Imports no MMF.

One node per method: `pe: {method: lora, lora: {rank: 8, ...}, paper: {reduction_factor: 10, ...}, ...}`; each
sub-node starts as the method's `defaults.yaml` (mmf_pe/models/pe_node.py writes them into the YAML MMF reads), so
`model_config.visual_bert_pe.pe.lora.rank=16` works on the command line and a key of one method never reaches
another. `method_settings` is the one reader of such a node, for every model family and every file format (adapter
exports hold one method's settings flat: `{method: lora, rank: 8, ...}`; older run configs held every method's keys
flat, converted by mmf_pe.tuners.legacy).

The training mode is chosen one way: `training_mode` (fc | full | pe; null = the model's default). `pe.method` only
picks the method, and setting it while the mode is not pe is refused, as is a `freeze_base` (the paper's old switch)
that says otherwise (docs/pe-methods.md).
"""
from typing import Optional, Tuple

from mmf_pe.tuners.registry import PE_METHODS, get_pe_method

TRAINING_MODES = ("fc", "full", "pe")


def plain(node) -> dict:
    """A dict of a mapping or omegaconf node (None -> {})."""
    if node is None:
        return {}
    if not hasattr(node, "items"):
        raise TypeError(f"pe config must be a mapping, got {type(node).__name__}")
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)


def method_settings(pe_node, default_method: Optional[str] = "paper") -> Tuple[Optional[str], dict]:
    """(method, {key: value} of its set keys) of a `pe:` node: `method` (null = `default_method`), then its own
    sub-node; keys written flat beside `method` (an adapter export's `pe`, a run saved before per-method nodes) are
    read as that method's, after mmf_pe.tuners.legacy drops what the old YAML put there for every method. Other
    methods' sub-nodes are ignored. Unknown keys stay in the result, for the method's config class to refuse.
    With `default_method=None`, a node naming no method (an fc export's `pe: null`) gives (None, {})."""
    from mmf_pe.tuners.legacy import flat_pe_settings

    data = plain(pe_node)
    method = data.get("method") or default_method
    if method is None:
        return None, {}
    if not isinstance(method, str):
        raise ValueError(f"pe.method must be a method name, got {method!r}")
    get_pe_method(method)
    own = data.get(method)
    if own is not None and not hasattr(own, "items"):
        raise ValueError(f"pe.{method} must be a mapping of {method}'s settings, got {own!r}")
    flat = {k: v for k, v in data.items() if k != "method" and k not in PE_METHODS}
    settings = {**plain(own), **flat_pe_settings(flat, method)}
    return method, {k: v for k, v in settings.items() if v is not None}


def resolve_training_mode(node, default_mode: str, model_name: str = "model") -> str:
    """The training mode of a model config (mapping or omegaconf node, already upgraded by
    mmf_pe.tuners.legacy.upgrade_model_config): `training_mode`, null = `default_mode`. Refuses, naming the keys,
    `pe.method` set while the mode is not pe, and a `freeze_base` the mode contradicts."""
    where = f"model_config.{model_name}"
    mode = node.get("training_mode", None)
    mode = default_mode if mode is None else str(mode).lower()
    if mode not in TRAINING_MODES:
        raise ValueError(f"{where}.training_mode must be one of {TRAINING_MODES}, got {mode!r}")
    freeze_base = node.get("freeze_base", None)
    if freeze_base is not None and bool(freeze_base) != (mode != "full"):
        raise ValueError(f"{where}.freeze_base={freeze_base} contradicts {where}.training_mode={mode} (freeze_base is "
                         f"the old switch; training_mode alone chooses what trains: remove freeze_base)")
    pe = node.get("pe", None)
    method = pe.get("method", None) if pe is not None else None
    if method is not None and mode != "pe":
        raise ValueError(f"{where}.pe.method={method} is set but {where}.training_mode={mode}: the method is used in "
                         f"training_mode=pe only (set training_mode=pe, or pe.method=null)")
    return mode


def pe_config_from(pe_node, default_method: str = "paper"):
    """The method's config object from a `pe:` node (see `method_settings`); unknown keys are refused by name."""
    method, settings = method_settings(pe_node, default_method)
    return get_pe_method(method).config_cls.from_config({**settings, "method": method})


def method_defaults_node(method: str, overrides: Optional[dict] = None) -> dict:
    """A method's sub-node as the model YAML gets it: its defaults.yaml without `method`, then `overrides`."""
    defaults = {k: v for k, v in get_pe_method(method).defaults().items() if k != "method"}
    return {**defaults, **(overrides or {})}
