"""LoRA on any encoder of the family through peft, by one regex built from the encoder's towers.

`pe.target_modules`: module paths relative to one layer of a tower, matched exactly (`self_attn.q_proj`) or by their
last parts (`q_proj` = any `*.q_proj` of the layer), or one regex string over those relative paths. `pe.encoders`:
`all` (alias `both`), one tower name or a list (towers: clip/blip vision + text; blip2 vision + qformer + text
(+ text_decoder for T5)). `pe.layers` / `pe.top_k_layers` are resolved per tower, whose depths may differ.
`pe.alpha` null = rank (scaling 1).
"""
import re

ALL_TOWERS = ("all", "both")


def chosen_towers(towers, encoders):
    if encoders is None or encoders in ALL_TOWERS:
        return dict(towers)
    names = [encoders] if isinstance(encoders, str) else list(encoders)
    unknown = [n for n in names if n not in towers]
    if unknown:
        raise ValueError(f"pe.encoders must be all, or among {sorted(towers)}; got {unknown}")
    return {n: towers[n] for n in names}


def target_regex(model, towers, pe_config, targets):
    """Full-name regex (as peft applies a string target) over the chosen towers' selected layers."""
    if isinstance(targets, str):
        relative = targets
    else:
        relative = r"(?:\w+\.)*(?:" + "|".join(re.escape(t) for t in targets) + ")"
    prefixes = []
    for path in towers.values():
        depth = len(model.get_submodule(path))
        layers = "|".join(str(i) for i in pe_config.selected_layers(depth))
        prefixes.append(rf"{re.escape(path)}\.(?:{layers})")
    return rf"(?:{'|'.join(prefixes)})\.(?:{relative})"


def inject_lora(model, encoder, pe_config):
    """LoRA into `model` (the encoder's HF model); returns the names of the parameters it added."""
    from peft import LoraConfig, inject_adapter_in_model

    rank = int(pe_config.rank)
    targets = pe_config.target_modules or list(encoder.lora_targets)
    towers = chosen_towers(encoder.towers(model), pe_config.extra.get("encoders", "all"))
    config = LoraConfig(
        r=rank,
        lora_alpha=float(pe_config.alpha if pe_config.alpha is not None else rank),
        lora_dropout=float(pe_config.dropout),
        target_modules=target_regex(model, towers, pe_config, targets),
        bias="none",
    )
    no_match = ValueError(f"pe.method=lora matched no module of this {encoder.label} (target_modules={targets}, "
                          f"towers {sorted(towers)})")
    try:
        inject_adapter_in_model(config, model)
    except ValueError as error:  # peft's own "Target modules ... not found"
        if "not found" in str(error):
            raise no_match from error
        raise
    # peft renames each wrapped layer's own weights to `<layer>.base_layer.*`; what it adds is named `lora_*`
    added = [name for name, _ in model.named_parameters() if ".lora_" in name]
    if not added:
        raise no_match
    return added
