"""Old formats and old names of the PE core, in one place, with the version that removes them. Imports no MMF.

The converter: configs and exports written before per-method `pe:` nodes (mmf-pe 0.1.0 up to main b0ac72c) still
load and score as they did (tests/test_legacy_formats.py, on files that version wrote):

- a model config node (a run's config.yaml, a checkpoint's stored config, a frozen_vl adapter's `model_config`, an
  old-style project YAML): `upgrade_model_config` turns `freeze_base` into `training_mode`, moves flat `pe.<key>`
  into `pe.<method>.<key>`, lifts `pe.train_visual_projection` to the model's `train_visual_projection` and
  `pe.encoders` to `pe_towers`;
- an adapter export's `pe` (flat, one method's settings): `flat_pe_settings` drops its `train_visual_projection`
  (the projection's tensors in the export say whether it trained).

Old names kept as aliases: `PaperAdapterOutput` (now `AdaptBertOutput`); `mmf_pe.tuners.export.{find_checkpoint,
read_checkpoint, build_from_run_config, export, main}` (now in `mmf_pe.experiments.export`, which reads MMF runs:
looked up only when used, so the core keeps importing no MMF). The model tier's aliases (model `clip_pe`,
`clip_pe.cache`, `check_clip_dir`) are in mmf_pe/models/legacy.py.
"""
import importlib
import warnings

REMOVED_IN = "0.3.0"  # the version that drops every alias and conversion below (docs/pe-methods.md)

# What the old visual_bert_pe.yaml put in every run's flat `pe:` node whatever the method: dropped where the method
# has no such key (any other value of a key the method lacks stays an error).
LEGACY_PE_DEFAULTS = {"reduction_factor": 10}
# pe.encoders (frozen_vl / clip_pe, now the model's `pe_towers`): the old defaults meant every tower.
LEGACY_ENCODERS = ("all", "both")
# clip_pe's old target_modules default (last name parts); the exact paths name the same modules (same keys).
LEGACY_CLIP_TARGETS = (["q_proj", "v_proj"], ["self_attn.q_proj", "self_attn.v_proj"])
# Moved from the method's node to the model's: one switch for fc and pe.
MOVED_TO_MODEL = ("train_visual_projection",)


def _paper_adapter_output():
    from mmf_pe.tuners.bottleneck.layer import AdaptBertOutput

    return AdaptBertOutput


ALIASES = {"PaperAdapterOutput": _paper_adapter_output}  # old name -> what it is now
# module -> (module the names moved to, the names); the target named by a variable: an upward edge only when used
MOVED_NAMES = {"mmf_pe.tuners.export": ("mmf_pe.experiments.export",
                                        ("find_checkpoint", "read_checkpoint", "build_from_run_config", "export",
                                         "main"))}


def moved_name(module, name):
    """`module.name` for a name that moved elsewhere (module-level `__getattr__`), else AttributeError."""
    target, names = MOVED_NAMES.get(module, (None, ()))
    if name not in names:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return getattr(importlib.import_module(target), name)


def __getattr__(name):
    if name in ALIASES:
        warnings.warn(f"{name} is an old name (removed in mmf-pe {REMOVED_IN}); use "
                      f"{ALIASES[name]().__name__}", FutureWarning, stacklevel=2)
        return ALIASES[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def upgrade_model_node(config, model_name, default_method):
    """`upgrade_model_config` applied in place to a model's config (an omegaconf node or a dict); returns it."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(config, resolve=False) if OmegaConf.is_config(config) else dict(config)
    upgraded = upgrade_model_config(data, model_name, default_method)
    if upgraded != data:
        for key in [k for k in data if k not in upgraded]:
            del config[key]
        for key in [k for k in upgraded if upgraded[k] != data.get(k, object())]:
            config[key] = upgraded[key]
    return config


def flat_pe_settings(flat, method):
    """Keys written flat beside `pe.method` (an adapter export; an old run config, which listed every method's keys,
    null where unset) as `method`'s settings: nulls and the old YAML's shared defaults the method lacks dropped,
    `train_visual_projection` (now the model's key) dropped. What is left is checked by the method's config."""
    from mmf_pe.tuners.registry import get_pe_method

    keys = get_pe_method(method).config_cls.keys()
    return {k: v for k, v in flat.items()
            if v is not None and k not in MOVED_TO_MODEL
            and (k in keys or LEGACY_PE_DEFAULTS.get(k, object()) != v)}


def upgrade_model_config(node, model_name, default_method):
    """A model config node (dict) in today's layout; a node already in it comes back unchanged (a copy).

    Old semantics kept exactly: `training_mode` wins where set; where null, `freeze_base: false` -> full, `true` ->
    fc, or pe when `pe.method` is set. In a node that also has today's per-method sub-nodes (an old-style YAML over
    today's defaults), a `freeze_base` that contradicts a set `training_mode` is left for `resolve_training_mode` to
    refuse by name."""
    from mmf_pe.tuners.registry import PE_METHODS

    node = dict(node)
    pe = dict(node.get("pe") or {})
    flat = {k: v for k, v in pe.items() if k not in ("method", "encoders") and k not in PE_METHODS}
    if not flat and "freeze_base" not in node and "encoders" not in pe:
        return node
    old_run = bool(flat) and not any(k in PE_METHODS for k in pe)  # a run saved then: every key flat, no sub-node
    mode = node.get("training_mode")
    if "freeze_base" in node and (mode is None or old_run):
        freeze_base = node.pop("freeze_base")
        derived = mode is None
        if derived:
            mode = "full" if not freeze_base else ("pe" if pe.get("method") else "fc")
        node["training_mode"] = mode
        if derived and mode != "pe":  # the old switch ignored pe.method outside pe mode
            pe["method"] = None
    if old_run and mode != "pe":  # the old code read no PE setting outside pe mode
        pe, flat = {"method": None}, {}
    if flat:
        method = pe.get("method") or default_method
        written = sorted(k for k, v in flat.items() if v is not None)
        if written:
            warnings.warn(f"model_config.{model_name}.pe: {', '.join(written)} written flat, read as pe.{method}.<key> "
                          f"(the old layout, read until mmf-pe {REMOVED_IN})", FutureWarning, stacklevel=2)
        for key in flat:
            pe.pop(key)
        if flat.get("train_visual_projection"):
            node["train_visual_projection"] = True
        if method in PE_METHODS:
            pe[method] = {**dict(pe.get(method) or {}), **flat_pe_settings(flat, method)}
        else:  # an unknown method: left for the registry to refuse by name
            pe[method] = {k: v for k, v in flat.items() if v is not None}
    encoders = pe.pop("encoders", None)
    if encoders is not None and encoders not in LEGACY_ENCODERS:
        raise ValueError(f"model_config.{model_name}.pe.encoders is now model_config.{model_name}.pe_towers "
                         f"(the towers are the model's, not the PE method's); got encoders={encoders!r}")
    node["pe"] = pe
    return node
