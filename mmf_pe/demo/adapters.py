"""The demo's exported adapters over one shared base, the layout the online service reads (`logs/demo/adapters/`):

    adapters/
      index.json                  which adapters there are, their modes/methods, fingerprints, val AUROC
      base/model.safetensors      the frozen weights, saved once: every tensor no exported adapter trains
      base/config.yaml            the run config the model is built from (architecture, text encoder, features)
      fc/  adapter_config.json + adapter_model.safetensors     (`mmf_pe export-adapter` output)
      pe/  adapter_config.json + adapter_model.safetensors

A served model = build from base/config.yaml with the adapter's training_mode / pe, load base/model.safetensors,
then `load_adapter` (fingerprint of the frozen weights checked). The demo rebuilds every adapter this way and checks
that the result equals its run's best checkpoint, tensor by tensor, so a base that does not fit cannot be published.
"""
import copy
import json
import os
import shutil

import torch

from mmf_pe.utils.io import atomic_write_bytes, atomic_write_text

FORMAT = "mmf_pe.demo_adapters/1"
EXPORTED = ("fc", "pe")  # the demo's modes that export an adapter (Full has no frozen base; text-only is a control)
BASE_WEIGHTS = "model.safetensors"
BASE_CONFIG = "config.yaml"


def _from_base_key(model):
    """{base name (peft's `.base_layer` removed): model name} for every tensor of the model's state."""
    from mmf_pe.tuners.peft_methods import base_key

    return {base_key(name): name for name in model.state_dict()}


def build_model(adapters_dir, name):
    """The served model of one adapter: base config + the adapter's mode, base weights, then the adapter (checked)."""
    from omegaconf import OmegaConf
    from safetensors.torch import load_file

    from mmf_pe.tuners.export import build_from_run_config, load_adapter, read_adapter

    adapter_dir = os.path.join(adapters_dir, name)
    adapter_config, _ = read_adapter(adapter_dir)
    config = OmegaConf.to_container(OmegaConf.load(os.path.join(adapters_dir, "base", BASE_CONFIG)), resolve=False)
    model_config = config["model_config"]["visual_bert_pe"]
    model_config["training_mode"] = adapter_config["training_mode"]
    if adapter_config.get("pe"):
        model_config["pe"] = copy.deepcopy(adapter_config["pe"])
    model = build_from_run_config(config)
    base = load_file(os.path.join(adapters_dir, "base", BASE_WEIGHTS))
    names = _from_base_key(model)
    trained = set(adapter_config["parameters"])
    missing = [n for key, n in names.items() if key not in base and n not in trained]
    if missing:
        raise ValueError(f"{adapters_dir}/base/{BASE_WEIGHTS}: lacks {len(missing)} tensor(s) the {name} adapter "
                         f"does not provide either, e.g. {missing[:5]}")
    state = model.state_dict()
    with torch.no_grad():
        for key, tensor in base.items():
            if key in names:
                state[names[key]].copy_(tensor)
    load_adapter(model, adapter_dir, check_fingerprint=True)
    return model


def export_demo_adapters(out, run_dirs, seed):
    """Export FC and PE (the given seed's runs) with `mmf_pe export-adapter` and save their shared base once.
    Returns the index (also written to adapters/index.json), or None when neither mode ran."""
    from omegaconf import OmegaConf
    from safetensors.torch import save

    from mmf_pe.tuners.export import base_key, export, find_checkpoint, read_checkpoint, trained_state

    names = [n for n in EXPORTED if (n, seed) in run_dirs]
    if not names:
        return None
    adapters_dir = os.path.join(out, "adapters")
    shutil.rmtree(adapters_dir, ignore_errors=True)  # one consistent set: never a mix of old and new exports
    os.makedirs(os.path.join(adapters_dir, "base"))
    exported, base, base_source, checkpoints = {}, {}, None, {}
    for name in names:
        _, checkpoint, model = export(run_dirs[(name, seed)], os.path.join(adapters_dir, name))
        checkpoints[name] = checkpoint
        trained = set(trained_state(model))
        frozen = {base_key(n): t.detach().contiguous().cpu() for n, t in model.state_dict().items()
                  if n not in trained and _is_base_tensor(model, n)}
        for key, tensor in frozen.items():
            if key in base and not torch.equal(base[key], tensor):
                raise ValueError(f"demo adapters: {key} differs between the {base_source} and {name} runs' frozen "
                                 "weights; the adapters cannot share one base")
            base.setdefault(key, tensor)
        if base_source is None:
            base_source = name
            _, config = read_checkpoint(find_checkpoint(run_dirs[(name, seed)]))
            atomic_write_text(os.path.join(adapters_dir, "base", BASE_CONFIG), OmegaConf.to_yaml(OmegaConf.create(
                config)))
        with open(os.path.join(adapters_dir, name, "adapter_config.json")) as f:
            adapter_config = json.load(f)
        exported[name] = {"dir": name, "training_mode": adapter_config["training_mode"],
                          "pe_method": (adapter_config.get("pe") or {}).get("method"),
                          "num_parameters": adapter_config["num_parameters"],
                          "base_fingerprint": adapter_config["base_fingerprint"]["digest"],
                          "source": os.path.relpath(checkpoint, out), "seed": seed}
    atomic_write_bytes(os.path.join(adapters_dir, "base", BASE_WEIGHTS), save(base, metadata={"format": FORMAT}))
    for name in names:  # what the service will do, checked against each run's own best checkpoint
        _check_equal(build_model(adapters_dir, name), checkpoints[name], name)
    index = {"format": FORMAT, "base": {"weights": f"base/{BASE_WEIGHTS}", "config": f"base/{BASE_CONFIG}",
                                       "num_tensors": len(base),
                                       "num_parameters": sum(t.numel() for t in base.values())},
             "adapters": exported}
    atomic_write_text(os.path.join(adapters_dir, "index.json"), json.dumps(index, indent=2) + "\n")
    return index


def _is_base_tensor(model, name):
    """Tensors of the base model, not of a PE method (adapters, LoRA / IA3 factors): those live in adapters only."""
    pe_markers = ("adapter", "lora_", "ia3_")
    return not any(marker in name for marker in pe_markers)


def _check_equal(model, checkpoint, name):
    from mmf_pe.tuners.export import read_checkpoint

    state, _ = read_checkpoint(checkpoint)
    built = model.state_dict()
    differing = [key for key, tensor in built.items() if key in state and not torch.equal(state[key], tensor)]
    absent = [key for key in built if key not in state]
    if differing or absent:
        raise ValueError(f"demo adapters: base + {name} adapter is not the run's checkpoint {checkpoint}: "
                         f"{len(differing)} tensor(s) differ (e.g. {differing[:3]}), {len(absent)} absent")
