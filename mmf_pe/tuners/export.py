"""Adapter-only checkpoints: only the trained parameters (safetensors) + a small JSON config. Imports no MMF.

Written by `mmf_pe export-adapter` (mmf_pe/experiments/export.py, which reads MMF runs) and `save_adapter`.
`<out>/adapter_model.safetensors` holds the trained tensors under the model's own names (adapters, classifier, and
LayerNorms / visual projection where they trained); `<out>/adapter_config.json` names the method, its settings, the
architecture and a fingerprint of the frozen base weights. `load_adapter(model, out)` checks fingerprint, names and
shapes before copying anything, and never unpickles: safetensors and JSON only.
"""
import importlib
import json
import os

import torch

from mmf_pe.tuners.peft_methods import base_key
from mmf_pe.utils.fingerprint import tensors_digest
from mmf_pe.utils.io import atomic_write_bytes, atomic_write_text

FORMAT = "mmf_pe.adapter/1"
WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
ARCHITECTURE_KEYS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "visual_embedding_dim", "num_labels",
    "training_head_type", "embedding_strategy", "bypass_transformer",
)


class AdapterMismatchError(ValueError):
    """The adapter does not fit the model it is loaded onto (other base weights, method, names or shapes)."""


def trained_state(model):
    """{name: tensor} of the parameters that train (the model's own `requires_grad` flags)."""
    return {name: p.detach().contiguous().cpu() for name, p in model.named_parameters() if p.requires_grad}


def base_fingerprint(model, exclude=None):
    """sha256 over names (base names: peft's `.base_layer` removed), shapes, dtypes and bytes of the frozen weights."""
    exclude = set(trained_state(model)) if exclude is None else set(exclude)
    named = {base_key(name): p for name, p in model.named_parameters() if name not in exclude}
    return {"algorithm": "sha256", "digest": tensors_digest(named), "num_tensors": len(named),
            "num_parameters": sum(p.numel() for p in named.values())}


def save_adapter(model, out_dir, source=None):
    """Write the trained parameters of a built VisualBERTPE and its config. Returns the weights file's path."""
    from safetensors.torch import save

    state = trained_state(model)
    config = {
        "format": FORMAT,
        "model": "visual_bert_pe",
        "training_mode": model.training_mode,
        "pe": model.pe_config.to_dict() if model.training_mode == "pe" else None,
        "architecture": {k: _plain(model.config.get(k)) for k in ARCHITECTURE_KEYS if k in model.config},
        "base_fingerprint": base_fingerprint(model, exclude=state),
        "parameters": {name: list(t.shape) for name, t in state.items()},
        "num_parameters": sum(t.numel() for t in state.values()),
        "source": source,
    }
    weights_path = os.path.join(out_dir, WEIGHTS_NAME)
    atomic_write_bytes(weights_path, save(state, metadata={"format": FORMAT}))
    atomic_write_text(os.path.join(out_dir, CONFIG_NAME), json.dumps(config, indent=2) + "\n")
    return weights_path


def read_adapter(adapter_dir):
    """(config dict, {name: tensor}) from an exported directory; safetensors + JSON only."""
    from safetensors.torch import load_file

    config_path, weights_path = os.path.join(adapter_dir, CONFIG_NAME), os.path.join(adapter_dir, WEIGHTS_NAME)
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: missing; an adapter export has {CONFIG_NAME} and {WEIGHTS_NAME}")
    with open(config_path) as f:
        try:
            config = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{config_path}: line {error.lineno}: not valid JSON ({error.msg})") from None
    if config.get("format") != FORMAT:
        raise ValueError(f"{config_path}: format {config.get('format')!r} is not {FORMAT!r}")
    return config, load_file(weights_path)


def load_adapter(model, adapter_dir, merge=False, check_fingerprint=True):
    """Copy an export onto a built VisualBERTPE (same method, base weights already loaded).

    Checks, before changing anything: training mode and method, the base-weight fingerprint, and that every tensor
    has a parameter of the same name and shape. `merge=True` then folds LoRA / IA3 into the base weights.
    """
    config, state = read_adapter(adapter_dir)
    where = os.path.join(adapter_dir, CONFIG_NAME)
    if config["training_mode"] != model.training_mode:
        raise AdapterMismatchError(
            f"{where}: exported from a {config['training_mode']!r} model, loaded onto a {model.training_mode!r} one"
        )
    method = (config.get("pe") or {}).get("method")
    if model.training_mode == "pe" and method != model.pe_config.method:
        raise AdapterMismatchError(f"{where}: pe.method {method!r} but the model uses {model.pe_config.method!r}")
    params = dict(model.named_parameters())
    problems = [f"{name}: not in the model" for name in state if name not in params]
    problems += [
        f"{name}: shape {tuple(t.shape)} in the adapter, {tuple(params[name].shape)} in the model"
        for name, t in state.items() if name in params and params[name].shape != t.shape
    ]
    if problems:
        raise AdapterMismatchError(f"{where}: does not fit this model:\n  " + "\n  ".join(problems[:20]))
    if check_fingerprint:
        expected = config["base_fingerprint"]
        actual = base_fingerprint(model, exclude=state)
        if actual["digest"] != expected["digest"]:
            raise AdapterMismatchError(
                f"{where}: the base weights differ from those the adapter was trained on (fingerprint "
                f"{actual['digest'][:12]}.. over {actual['num_tensors']} tensors, expected {expected['digest'][:12]}.. "
                f"over {expected['num_tensors']}). Load the same base checkpoint first (e.g. the COCO VisualBERT), "
                "or pass check_fingerprint=False if you know better."
            )
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)
    if merge:
        model.merge_pe()
    return config


def _plain(value):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


# Moved to mmf_pe.experiments.export (they read MMF runs and build models): still importable from here, looked up
# only when used, so this module keeps importing no MMF.
MOVED_TO_EXPERIMENTS = ("find_checkpoint", "read_checkpoint", "build_from_run_config", "export", "main")


def __getattr__(name):
    if name in MOVED_TO_EXPERIMENTS:
        return getattr(importlib.import_module(_EXPERIMENTS_EXPORT), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_EXPERIMENTS_EXPORT = "mmf_pe.experiments.export"
