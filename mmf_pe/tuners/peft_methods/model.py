"""LoRA / IA3 via peft's `inject_adapter_in_model`, on `model.bert` or on any encoder's lists of layers.

peft replaces each targeted `nn.Linear` by a layer that keeps the original under `base_layer`, so a base key
`encoder.layer.0.attention.self.query.weight` becomes `...query.base_layer.weight`. `wrapped_key` / `base_key`
translate between the two, which is how plain BERT / COCO-VisualBERT checkpoints still load (see
`VisualBERTPE.format_state_key`) and how exports fingerprint the base weights under their base names.
"""
import re
import sys

from torch import nn

BASE_LAYER = ".base_layer"
BERT_LAYERS = ("encoder.layer",)  # the ModuleList of layers in a BertModel


def target_regex(model, pe_config, modules, layer_lists=BERT_LAYERS):
    """A full-match regex for `modules` (paths relative to one layer, or one regex over such paths) in the selected
    layers of each ModuleList named in `layer_lists` (BERT: `encoder.layer`; a frozen CLIP: its vision and text
    towers' `*.encoder.layers`): "output.dense" then means `encoder.layer.<i>.output.dense`, never
    `attention.output.dense`. `pe.layers` / `pe.top_k_layers` are resolved per list, whose depths may differ.
    """
    if isinstance(modules, str):
        inner = modules
    else:
        if not modules:
            raise ValueError(f"{pe_config.key('target_modules')} is empty")
        inner = "|".join(re.escape(m) for m in modules)
    selected = {path: pe_config.selected_layers(len(model.get_submodule(path))) for path in layer_lists}
    prefixes = "|".join(rf"{re.escape(path)}\.(?:{'|'.join(map(str, layers))})" for path, layers in selected.items())
    pattern = rf"(?:{prefixes})\.(?:{inner})"
    # Each listed path must name an nn.Linear in every selected layer (of at least one list): a typo fails here.
    linear_names = {name for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    if not isinstance(modules, str):
        for relative in modules:
            if not any(all(f"{path}.{i}.{relative}" in linear_names for i in layers)
                       for path, layers in selected.items()):
                raise ValueError(_missing_path_message(pe_config.key("target_modules"), relative, selected,
                                                        linear_names))
    if not any(re.fullmatch(pattern, name) for name in linear_names):
        raise ValueError(f"{pe_config.key('target_modules')} {modules!r} matches no nn.Linear in the layers "
                         + "; ".join(f"{path}.{{{','.join(map(str, layers))}}}" for path, layers in selected.items()))
    return pattern


def _missing_path_message(key, relative, selected, linear_names):
    """Which layer lacks the path, and the exact paths that end like it (`q_proj` -> `self_attn.q_proj`)."""
    path, layers = next(iter(selected.items()))
    missing = next(i for i in layers if f"{path}.{i}.{relative}" not in linear_names)
    where = f"encoder layer {missing}" if path == BERT_LAYERS[0] else f"{path}.{missing}"
    similar = sorted({name.split(f"{p}.{i}.", 1)[1] for p, ls in selected.items() for i in ls for name in linear_names
                      if name.startswith(f"{p}.{i}.") and name.endswith(f".{relative}")})
    hint = f"; paths are exact, relative to one layer: did you mean {similar}?" if similar else ""
    return f"{key}: {where} has no nn.Linear {relative!r}{hint}"


def _inject(bert, peft_config):
    from peft import inject_adapter_in_model

    before = {name for name, _ in bert.named_parameters()}
    inject_adapter_in_model(peft_config, bert)
    return [name for name, _ in bert.named_parameters() if base_key(name) not in before]


def inject_lora(bert, pe_config, layer_lists=BERT_LAYERS):
    """LoRA (Hu et al. 2022): W + (alpha / r) B A on the target linears; B = 0, so it starts as an exact identity.
    `layer_lists`: the ModuleLists of layers it goes into (any encoder; BertModel's by default)."""
    from peft import LoraConfig

    config = LoraConfig(
        r=pe_config.rank,
        lora_alpha=pe_config.alpha if pe_config.alpha is not None else pe_config.rank,
        lora_dropout=pe_config.dropout,
        target_modules=target_regex(bert, pe_config, pe_config.get("target_modules"), layer_lists),
        bias="none",
    )
    return _inject(bert, config)


def inject_ia3(bert, pe_config, layer_lists=BERT_LAYERS):
    """IA3 (Liu et al. 2022): learned vectors scaling keys, values and the FFN's inner activation; ones at init."""
    from peft import IA3Config

    config = IA3Config(
        target_modules=target_regex(bert, pe_config, pe_config.get("target_modules"), layer_lists),
        feedforward_modules=target_regex(bert, pe_config, pe_config.get("feedforward_modules"), layer_lists),
    )
    return _inject(bert, config)


def wrapped_module_paths(module):
    """Paths (relative to `module`) of the layers peft wrapped."""
    if "peft" not in sys.modules:  # nothing can be wrapped; spares non-peft methods peft's import time
        return set()
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {name for name, sub in module.named_modules() if isinstance(sub, BaseTunerLayer)}


def wrapped_key(key, wrapped_paths):
    """A base state-dict key in the names of the wrapped model (`X.weight` -> `X.base_layer.weight`)."""
    path, _, leaf = key.rpartition(".")
    return f"{path}{BASE_LAYER}.{leaf}" if path in wrapped_paths else key


def base_key(key):
    """The base model's name of a (possibly wrapped) parameter."""
    return key.replace(BASE_LAYER + ".", ".")


def merge_and_unload(module):
    """Fold every peft layer's update into its base linear and put the plain linear back (LoRA: no extra latency).

    Returns the number of layers merged; afterwards `module` has exactly the base model's parameter names.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    merged = 0
    for path in sorted(wrapped_module_paths(module), key=len, reverse=True):
        layer = module.get_submodule(path)
        if not isinstance(layer, BaseTunerLayer):
            continue
        layer.merge()
        parent_path, _, attribute = path.rpartition(".")
        parent = module.get_submodule(parent_path) if parent_path else module
        setattr(parent, attribute, layer.get_base_layer())
        merged += 1
    return merged
