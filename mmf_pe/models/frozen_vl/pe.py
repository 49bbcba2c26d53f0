"""PE methods on a frozen encoder, through the PE core's registry (`mmf_pe.tuners`): the same config classes,
`target_modules` meaning and `alpha` default as for visual_bert_pe, applied to the layers of the chosen towers.

- `model_config.<model>.pe`: `method` and one sub-node per method (`pe.lora.rank`; read by the PE core's
  `method_settings`; unknown or inapplicable keys are refused, naming the key); methods: those registered for any
  encoder (`lora`, `ia3`); method null = lora. The mode is `training_mode` alone (null = fc). `target_modules` are
  exact paths relative to one layer of a tower (`self_attn.q_proj`), or one regex string over such paths; null = the
  encoder's defaults (`FrozenEncoder.pe_defaults`, only the paths its chosen towers have). `alpha` null = rank.
- `model_config.<model>.pe_towers`: `all` (alias `both`), one tower name or a list (clip/blip: vision, text; blip2:
  vision, qformer, text, and text_decoder with T5). A model key, not a method's: which layers exist is the model's
  knowledge. `pe.layers` / `pe.top_k_layers` are resolved per tower, whose depths may differ.
"""

from mmf_pe.tuners import any_encoder_methods, apply_pe_method, get_pe_method, method_settings, pe_config_from
from mmf_pe.tuners.legacy import LEGACY_CLIP_TARGETS, upgrade_model_node

ALL_TOWERS = ("all", "both")
DEFAULT_METHOD = "lora"
DEFAULT_MODE = "fc"
# Keys of BasePEConfig that the frozen encoders do not act on: refused when set, rather than ignored.
UNSUPPORTED = ("train_layer_norms",)


def upgrade_node(config, model_name):
    """The model node in today's layout, changed in place (old configs: mmf_pe.tuners.legacy); returns it."""
    upgrade_model_node(config, model_name, DEFAULT_METHOD)
    if config.get("train_visual_projection", None):  # moved there from an old pe node
        raise ValueError(f"model_config.{model_name}.pe.train_visual_projection is not supported on a frozen encoder")
    return config


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
    """The chosen method's set keys (null = unset) and `method`, as one flat dict (the PE core's `method_settings`)."""
    method, settings = method_settings(node, DEFAULT_METHOD)
    return {**settings, "method": method}


def pe_config_for(settings, model_name):
    """The registered method's config from the set keys (method null = lora); unknown keys are refused."""
    method = settings.get("method") or DEFAULT_METHOD
    if not get_pe_method(method).any_encoder:
        raise ValueError(f"model_config.{model_name}.pe.method={method!r} works on BERT-family encoders only; a frozen "
                         f"encoder takes one of {any_encoder_methods()}")
    config = pe_config_from({**settings, "method": method})
    for key in UNSUPPORTED:
        if config.get(key):
            raise ValueError(f"model_config.{model_name}.pe.{method}.{key} is not supported on a frozen encoder")
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
            raise ValueError(f"model_config.{model_name}.pe.{method}.target_modules: {encoder.label} has no default "
                             f"targets for pe.method={method}; set them (exact paths relative to one layer, or one "
                             "regex)")
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
