"""The demo's exported adapters over one shared base, in the layout `mmf_pe serve` reads (`logs/demo/adapters/`):

    adapters/
      index.json                       which adapters there are, their modes/methods, fingerprints, sources
      base/base_config.json            `mmf_pe export-base` output: architecture, max_seq_length, default adapter
      base/base_model.safetensors      the frozen weights, saved once
      base/tokenizer/                  the text encoder's vocabulary
      fc/  adapter_config.json + adapter_model.safetensors     (`mmf_pe export-adapter` output)
      pe/  adapter_config.json + adapter_model.safetensors

`make serve` (`mmf_pe serve --demo`) serves this folder. Before `index.json` is written, every adapter is loaded the
way the server loads it (`mmf_pe.serve.engine.Engine`: base tensors shared, adapter fingerprint checked) and the
served model is compared with its run's best checkpoint tensor by tensor, so a base that does not fit is never
published.
"""
import json
import os
import shutil

import torch

from mmf_pe.tuners import method_settings
from mmf_pe.utils.io import atomic_write_text

FORMAT = "mmf_pe.demo_adapters/2"
EXPORTED = ("fc", "pe")  # the demo's modes that export an adapter (Full has no frozen base; text-only is a control)
DEFAULT_ADAPTER = "pe"


def served_model(adapters_dir, name, engine=None):
    """The model the online service scores with for adapter `name` (base tensors + the adapter put on); `engine`:
    one already loaded from `adapters_dir` (base read once for several adapters)."""
    from mmf_pe.serve.engine import Engine

    engine = engine or Engine(adapters_dir)
    version = engine.read_folder_version(name)  # checks names, shapes and the base fingerprint
    version.kind.put_on(version)
    return version.kind.model


def export_demo_adapters(out, run_dirs, seed, tokenizer_dir):
    """Export FC and PE (the given seed's runs) with `mmf_pe export-adapter`, and their shared base once with
    `mmf_pe export-base`. Returns the index (also written to adapters/index.json), or None when neither mode ran."""
    from mmf_pe.experiments.export import export
    from mmf_pe.serve.base_export import export_base
    from mmf_pe.serve.engine import Engine

    names = [n for n in EXPORTED if (n, seed) in run_dirs]
    if not names:
        return None
    adapters_dir = os.path.join(out, "adapters")
    shutil.rmtree(adapters_dir, ignore_errors=True)  # one consistent set: never a mix of old and new exports
    os.makedirs(adapters_dir)
    exported, checkpoints = {}, {}
    for name in names:
        _, checkpoint, _ = export(run_dirs[(name, seed)], os.path.join(adapters_dir, name))
        checkpoints[name] = checkpoint
        with open(os.path.join(adapters_dir, name, "adapter_config.json")) as f:
            adapter_config = json.load(f)
        exported[name] = {"dir": name, "training_mode": adapter_config["training_mode"],
                          "pe_method": method_settings(adapter_config.get("pe"), None)[0],
                          "num_parameters": adapter_config["num_parameters"],
                          "base_fingerprint": adapter_config["base_fingerprint"]["digest"],
                          "accepts_images": adapter_config.get("feature_provenance") is not None,
                          "source": os.path.relpath(checkpoint, out), "seed": seed}
    default = DEFAULT_ADAPTER if DEFAULT_ADAPTER in names else names[0]
    export_base(run_dirs[(names[0], seed)], adapters_dir, tokenizer_dir=tokenizer_dir, default_adapter=default)
    engine = Engine(adapters_dir)
    for name in names:  # what the service will do, checked against each run's own best checkpoint
        _check_equal(served_model(adapters_dir, name, engine), checkpoints[name], name)
    base = engine.base_tensors
    index = {"format": FORMAT, "default_adapter": default,
             "base": {"config": "base/base_config.json", "weights": "base/base_model.safetensors",
                      "tokenizer": "base/tokenizer", "num_tensors": len(base),
                      "num_parameters": sum(t.numel() for t in base.values()),
                      "max_seq_length": engine.max_seq_length},
             "adapters": exported}
    atomic_write_text(os.path.join(adapters_dir, "index.json"), json.dumps(index, indent=2) + "\n")
    return index


def _check_equal(model, checkpoint, name):
    """Every tensor of the served model equals the checkpoint's (names: the checkpoint's, i.e. the model's own)."""
    from mmf_pe.tuners.export import read_checkpoint

    state, _ = read_checkpoint(checkpoint)
    built = model.state_dict()
    differing = [key for key, tensor in built.items() if key in state and not torch.equal(state[key], tensor)]
    absent = [key for key in built if key not in state]
    if differing or absent:
        raise ValueError(f"demo adapters: the served {name} model (base + adapter) is not the run's checkpoint "
                         f"{checkpoint}: {len(differing)} tensor(s) differ (e.g. {differing[:3]}), {len(absent)} "
                         f"absent (e.g. {absent[:3]})")
