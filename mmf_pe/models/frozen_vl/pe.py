"""PE methods on a frozen encoder, through the PE core's registry (`mmf_pe.tuners`): the same config classes,
`target_modules` meaning and `alpha` default as for visual_bert_pe, applied to the layers of the chosen towers.

- `model_config.<model>.pe`: the method's keys only (unknown or inapplicable keys are refused, naming the key);
  methods: those registered for any encoder (`lora`, `ia3`); method null = lora. `target_modules` are exact paths
  relative to one layer of a tower (`self_attn.q_proj`), or one regex string over such paths; null = the encoder's
  defaults (`FrozenEncoder.pe_defaults`, only the paths its chosen towers have). `alpha` null = rank.
- `model_config.<model>.pe_towers`: `all` (alias `both`), one tower name or a list (clip/blip: vision, text; blip2:
  vision, qformer, text, and text_decoder with T5). A model key, not a method's: which layers exist is the model's
  knowledge. `pe.layers` / `pe.top_k_layers` are resolved per tower, whose depths may differ.
"""
from omegaconf import OmegaConf

from mmf_pe.tuners import any_encoder_methods, apply_pe_method, get_pe_method, pe_config_from

ALL_TOWERS = ("all", "both")
# What the model YAMLs shipped before the PE core unification, still in the config.yaml of runs saved then (read back
# by export / evaluate): pe.encoders' defaults (every tower, now `pe_towers`) and clip_pe's target_modules default
# (last parts; exact paths are self_attn.q_proj / self_attn.v_proj, the same modules, so the same checkpoint keys).
LEGACY_ENCODERS = ALL_TOWERS
LEGACY_CLIP_TARGETS = (["q_proj", "v_proj"], ["self_attn.q_proj", "self_attn.v_proj"])
DEFAULT_METHOD = "lora"
# Keys of BasePEConfig that the frozen encoders do not act on: refused when set, rather than ignored.
UNSUPPORTED = ("train_layer_norms", "train_visual_projection")


def chosen_towers(towers, selection, key):
    """{name: layer-list path} of the towers `selection` names (`key` is the config key, for messages)."""
    if selection is None or selection in ALL_TOWERS:
        return dict(towers)
    names = [selection] if isinstance(selection, str) else list(selection)
    unknown = [n for n in names if n not in towers]
    if unknown:
        raise ValueError(f"{key} must be all, or among {sorted(towers)}; got {unknown}")
    return {n: towers[n] for n in names}


def pe_settings(node, model_name):
    """The `pe:` node as a plain dict of its set keys (null = unset), with the moved key `pe.encoders` refused."""
    data = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node or {})
    if data.get("encoders") in LEGACY_ENCODERS:
        data.pop("encoders")
    if data.get("encoders") is not None:
        raise ValueError(f"model_config.{model_name}.pe.encoders is now model_config.{model_name}.pe_towers "
                         f"(the towers are the model's, not the PE method's); got encoders={data['encoders']!r}")
    return {k: v for k, v in data.items() if k != "encoders" and v is not None}


def pe_config_for(settings, model_name):
    """The registered method's config from the set keys (method null = lora); unknown keys are refused."""
    method = settings.get("method") or DEFAULT_METHOD
    if not get_pe_method(method).any_encoder:
        raise ValueError(f"model_config.{model_name}.pe.method={method!r} works on BERT-family encoders only; a frozen "
                         f"encoder takes one of {any_encoder_methods()}")
    config = pe_config_from({**settings, "method": method})
    for key in UNSUPPORTED:
        if config.get(key):
            raise ValueError(f"model_config.{model_name}.pe.{key} is not supported on a frozen encoder")
    return config


def with_encoder_defaults(settings, encoder, model, towers, model_name):
    """`settings` plus the encoder's defaults for the keys left unset, keeping only the default paths some chosen
    tower has in its first layer (BLIP-2's list covers OPT and T5 language models; BLIP's vision has no query)."""
    method = settings.get("method") or DEFAULT_METHOD
    if encoder.name == "clip" and settings.get("target_modules") == LEGACY_CLIP_TARGETS[0]:
        settings = {**settings, "target_modules": LEGACY_CLIP_TARGETS[1]}
    defaults = encoder.pe_defaults.get(method)
    if defaults is None:
        if settings.get("target_modules") is None:
            raise ValueError(f"model_config.{model_name}.pe.target_modules: {encoder.label} has no default targets "
                             f"for pe.method={method}; set them (exact paths relative to one layer, or one regex)")
        return settings
    merged = dict(settings)
    for key, paths in defaults.items():
        if key not in settings:
            merged[key] = [p for p in paths if any(_has(model, f"{t}.0.{p}") for t in towers.values())]
    return merged


def _has(model, path):
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


def inject(model, encoder, pe_config, towers, model_name):
    """The method into the chosen towers' layers of `model` (the encoder's HF model); returns the added names."""
    try:
        added = apply_pe_method(model, pe_config, towers.values())
    except ValueError as error:
        raise ValueError(f"{model_name} ({encoder.label}, towers {sorted(towers)}): {error}") from error
    if not added:
        raise ValueError(f"{model_name}: pe.method={pe_config.method} added no parameter to this {encoder.label} "
                         f"(target_modules={pe_config.get('target_modules')}, towers {sorted(towers)})")
    return added
