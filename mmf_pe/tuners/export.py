"""Adapter-only checkpoints: only the trained parameters (safetensors) + a small JSON config. Imports no MMF.

Written by `mmf_pe export-adapter` (mmf_pe/experiments/export.py, which reads MMF runs) and `save_adapter`.
`<out>/adapter_model.safetensors` holds the trained tensors under the model's own names (adapters, classifier, and
LayerNorms / visual projection where they trained); `<out>/adapter_config.json` names the method, its settings, the
architecture and a fingerprint of the frozen base weights. `load_adapter(model, out)` checks fingerprint, names and
shapes before copying anything, and never unpickles: safetensors and JSON only.
"""
import json
import os

import torch

from mmf_pe.tuners.peft_methods import base_key
from mmf_pe.tuners.settings import method_settings
from mmf_pe.utils.fingerprint import tensor_digests, tensors_digest
from mmf_pe.utils.io import atomic_write_bytes, atomic_write_text
from mmf_pe.utils.text_normalization import check_mode

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


def _frozen_named(model, exclude=None):
    exclude = set(trained_state(model)) if exclude is None else set(exclude)
    return {base_key(name): p for name, p in model.named_parameters() if name not in exclude}


def base_fingerprint(model, exclude=None, per_tensor=True):
    """sha256 over names (base names: peft's `.base_layer` removed), shapes, dtypes and bytes of the frozen weights;
    with `per_tensor`, also each tensor's own digest (so a refusal can name the tensors that differ)."""
    named = _frozen_named(model, exclude)
    fingerprint = {"algorithm": "sha256", "digest": tensors_digest(named), "num_tensors": len(named),
                   "num_parameters": sum(p.numel() for p in named.values())}
    if per_tensor:
        fingerprint["tensors"] = tensor_digests(named)
    return fingerprint


def _fingerprint_differences(model, exclude, expected):
    """Lines naming the frozen tensors whose digests differ from an export's (or why they cannot be named)."""
    stored = expected.get("tensors")
    if not isinstance(stored, dict):
        return ["this export predates per-tensor digests, so the tensors that differ cannot be named "
                "(export it again to get them)"]
    actual = tensor_digests(_frozen_named(model, exclude))
    lines = [f"{name}: differs" for name in sorted(set(stored) & set(actual)) if stored[name] != actual[name]]
    lines += [f"{name}: in the adapter's base, not in this model" for name in sorted(set(stored) - set(actual))]
    lines += [f"{name}: in this model, not in the adapter's base" for name in sorted(set(actual) - set(stored))]
    return lines


def save_adapter(model, out_dir, source=None, feature_provenance=None, threshold=None, model_name="visual_bert_pe",
                 extra=None, lineage=None, text_normalization=None):
    """Write the trained parameters of a built model (VisualBERTPE unless `model_name` says otherwise) and its
    config. Returns the weights file's path.

    `feature_provenance` (see mmf_pe.tuners.provenance) lets `mmf_pe serve` run the same detector on images;
    `threshold` is the label threshold a server uses (0.5 when None); `extra`: keys the model's family adds
    (mmf_pe.models.contract); `lineage` (written by `mmf_pe adapt`) says which adapter version and data this one
    was trained from; `text_normalization` (mmf_pe.utils.text_normalization) is what the run's text processor did
    to captions, so a server does the same (absent: `none`)."""
    from safetensors.torch import save

    state = trained_state(model)
    config = {
        "format": FORMAT,
        "model": model_name,
        "training_mode": model.training_mode,
        "pe": model.pe_config.to_dict() if model.training_mode == "pe" else None,
        "architecture": {k: _plain(model.config.get(k)) for k in ARCHITECTURE_KEYS if k in model.config},
        "base_fingerprint": base_fingerprint(model, exclude=state),
        "parameters": {name: list(t.shape) for name, t in state.items()},
        "num_parameters": sum(t.numel() for t in state.values()),
        "source": source,
        "feature_provenance": feature_provenance,
        "threshold": threshold,
        **(extra or {}),
    }
    if lineage is not None:
        config["lineage"] = lineage
    if text_normalization is not None:
        config["text_normalization"] = check_mode(text_normalization)
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
    with open(config_path, "rb") as f:
        try:
            config = json.loads(f.read().decode("utf-8"))
        except UnicodeDecodeError as error:
            raise ValueError(f"{config_path}: not UTF-8 text (byte {error.start})") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{config_path}: line {error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_path}: must hold a JSON object, holds a {type(config).__name__}")
    if config.get("format") != FORMAT:
        raise ValueError(f"{config_path}: format {config.get('format')!r} is not {FORMAT!r}")
    for key, kind in REQUIRED_KEYS.items():
        if not isinstance(config.get(key), kind):
            found = "missing" if key not in config else f"a {type(config[key]).__name__}"
            raise ValueError(f"{config_path}: key {key!r} must be a {kind.__name__}, is {found}")
    if not isinstance(config["base_fingerprint"].get("digest"), str):
        raise ValueError(f"{config_path}: key 'base_fingerprint' has no 'digest' string")
    try:
        state = load_file(weights_path)
    except Exception as error:  # safetensors' own errors do not name the file
        raise ValueError(f"{weights_path}: not a readable safetensors file ({type(error).__name__}: {error})") from None
    _check_listed(config, state, config_path, weights_path)
    return config, state


REQUIRED_KEYS = {"training_mode": str, "base_fingerprint": dict, "parameters": dict}


def _check_listed(config, state, config_path, weights_path):
    """The tensors of the weights file must be exactly those `parameters` lists, with the listed shapes."""
    listed = config["parameters"]
    problems = [f"{name}: listed in {CONFIG_NAME}, not in {WEIGHTS_NAME}" for name in listed if name not in state]
    problems += [f"{name}: in {WEIGHTS_NAME}, not listed in {CONFIG_NAME}" for name in state if name not in listed]
    problems += [f"{name}: shape {list(t.shape)} in {WEIGHTS_NAME}, {listed[name]} in {CONFIG_NAME}"
                 for name, t in state.items() if name in listed and list(t.shape) != list(listed[name] or [])]
    if problems:
        raise AdapterMismatchError(f"{weights_path} does not hold what {config_path} lists ({len(problems)} "
                                   "differences):\n  " + "\n  ".join(problems[:20]))


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
    method = method_settings(config.get("pe"), None)[0]
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
        actual = base_fingerprint(model, exclude=state, per_tensor=False)
        if actual["digest"] != expected["digest"]:
            differences = _fingerprint_differences(model, state, expected)
            raise AdapterMismatchError(
                f"{where}: the base weights differ from those the adapter was trained on (fingerprint "
                f"{actual['digest'][:12]}.. over {actual['num_tensors']} tensors, expected {expected['digest'][:12]}.. "
                f"over {expected.get('num_tensors')}). Load the same base checkpoint first (e.g. the COCO VisualBERT), "
                "or pass check_fingerprint=False if you know better.\n  " + "\n  ".join(differences[:20])
                + (f"\n  ... and {len(differences) - 20} more" if len(differences) > 20 else "")
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


def __getattr__(name):  # names moved to mmf_pe.experiments.export (old names: mmf_pe/tuners/legacy.py)
    from mmf_pe.tuners.legacy import moved_name

    return moved_name(__name__, name)
