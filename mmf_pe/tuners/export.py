"""Adapter-only checkpoints: only the trained parameters (safetensors) + a small JSON config.

    mmf_pe export-adapter <run dir | checkpoint.ckpt | model.pth> <out dir> [--which best|current|final]

`<out>/adapter_model.safetensors` holds the trained tensors under the model's own names (adapters, classifier, and
LayerNorms / visual projection where they trained); `<out>/adapter_config.json` names the method, its settings, the
architecture and a fingerprint of the frozen base weights. `load_adapter(model, out)` checks fingerprint, names and
shapes before copying anything, and never unpickles: safetensors and JSON only (MMF checkpoints are read with
`torch.load(weights_only=True)`).
"""
import argparse
import glob
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


# ---- reading MMF runs / checkpoints --------------------------------------------------------------------------------

def find_checkpoint(source, which="best"):
    """A run directory (env.save_dir) or a checkpoint file -> the file to read."""
    if os.path.isfile(source):
        return source
    if not os.path.isdir(source):
        raise FileNotFoundError(f"{source}: neither a run directory nor a checkpoint file")
    names = {"best": ["best.ckpt"], "current": ["current.ckpt"], "final": ["*_final.pth"]}
    order = [which] + [w for w in ("best", "current", "final") if w != which]
    for key in order:
        for pattern in names[key]:
            found = sorted(glob.glob(os.path.join(source, pattern)))
            if found:
                return found[0]
    raise FileNotFoundError(f"{source}: no best.ckpt, current.ckpt or *_final.pth in this run directory")


def read_checkpoint(path):
    """(state dict, config dict) of an MMF checkpoint, read without unpickling arbitrary objects."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # read only what is used
    except Exception as error:  # weights_only refuses arbitrary classes: say so instead of unpickling
        raise ValueError(f"{path}: cannot be read with torch.load(weights_only=True) ({error}); "
                         "only plain MMF checkpoints (tensors and containers) are accepted") from None
    if isinstance(checkpoint, dict) and "model" in checkpoint:  # MMF's .ckpt: model, optimizer, config, counts
        state, config = checkpoint["model"], checkpoint.get("config")
    else:  # MMF's *_final.pth: the state dict alone
        state, config = checkpoint, None
    if config is None:
        config_path = os.path.join(os.path.dirname(path), "config.yaml")
        if not os.path.isfile(config_path):
            raise FileNotFoundError(f"{path}: holds no config; expected the run's config.yaml next to it")
        config = _load_run_yaml(config_path)
    return state, config


def _load_run_yaml(path):
    """A run's config.yaml, resolved where MMF's resolvers allow (they are registered by MMF's import)."""
    from omegaconf import OmegaConf

    config = OmegaConf.load(path)
    try:
        return OmegaConf.to_container(config, resolve=True)
    except Exception:  # an interpolation this process cannot resolve (e.g. an unset env var): keep it literal
        return OmegaConf.to_container(config, resolve=False)


def build_from_run_config(config):
    """A VisualBERTPE with the architecture and method of a run's config (random weights, nothing downloaded)."""
    from omegaconf import OmegaConf

    from mmf_pe.compat import install

    install()
    import mmf.utils.env  # noqa: F401  (registers MMF's components)
    from mmf_pe.models.visual_bert_pe import VisualBERTPE, adopt_architecture

    model_name = config.get("model") or "visual_bert_pe"
    if model_name != "visual_bert_pe":
        raise ValueError(f"export-adapter supports visual_bert_pe runs, this one used model={model_name!r}")
    model_config = OmegaConf.create(config["model_config"]["visual_bert_pe"])
    try:
        bert_dir = model_config.get("bert_model_name", None)
    except Exception:  # an unresolved interpolation such as ${env.weights_dir}/...: the YAML's dimensions are used
        bert_dir = None
    if bert_dir and os.path.isfile(os.path.join(str(bert_dir), "config.json")):
        adopt_architecture(model_config, bert_dir)
    model_config.bert_model_name = None  # the checkpoint provides every weight
    model = VisualBERTPE(model_config)
    model.build()
    return model


def export(source, out_dir, which="best"):
    path = find_checkpoint(source, which)
    state, config = read_checkpoint(path)
    from mmf_pe.models.paper_checkpoint import as_pe_run_config, is_paper_state

    if is_paper_state(state):  # the paper's own `output.AdaptComb1/2` names, `model: visual_bert`: read as PE paper
        config = as_pe_run_config(config, state)
    model = build_from_run_config(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path}: does not match the model its config describes:\n{error}") from None
    os.makedirs(out_dir, exist_ok=True)
    return save_adapter(model, out_dir, source=os.path.abspath(path)), path, model


def _plain(value):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mmf_pe export-adapter", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="run directory (env.save_dir) or checkpoint file (.ckpt / _final.pth)")
    parser.add_argument("out", help="output directory")
    parser.add_argument("--which", choices=["best", "current", "final"], default="best",
                        help="which checkpoint of a run directory (default: best)")
    args = parser.parse_args(argv)
    weights, path, model = export(args.source, args.out, args.which)
    size = os.path.getsize(weights)
    full = sum(p.numel() * p.element_size() for p in model.parameters())
    print(f"{path} -> {weights}: {len(trained_state(model))} tensors, {size / 2**20:.2f} MiB "
          f"({100 * size / full:.2f} % of the full model's {full / 2**20:.1f} MiB)")
    return 0
