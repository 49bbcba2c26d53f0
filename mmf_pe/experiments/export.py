"""`mmf_pe export-adapter`: an MMF run's trained parameters as an adapter export (mmf_pe.tuners.export's format).

    mmf_pe export-adapter <run dir | checkpoint.ckpt | model.pth> <out dir> [--which best|current|final]
        [--features <training LMDB>] [--threshold t]

Reads MMF checkpoints with `torch.load(weights_only=True)` (no arbitrary unpickling) and rebuilds the model its
config describes; the adapter format itself (save / read / load) is MMF-free and lives in `mmf_pe.tuners.export`.
"""
import argparse
import glob
import json
import os

import torch

from mmf_pe.tuners.export import CONFIG_NAME, trained_state


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
    import zipfile

    # torch's zip format is memory-mapped (only the tensors used are read); a legacy (torch < 1.6, or
    # `_use_new_zipfile_serialization=False`) file cannot be, and is read whole, as safely.
    mmap = zipfile.is_zipfile(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
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
    """The model a run's config describes (its family's `build`; random or the run's frozen weights, nothing
    downloaded)."""
    from mmf_pe.models.contract import family_of_run

    return family_of_run(config).build(config)


def load_run_model(source, which="best"):
    """(model with the checkpoint loaded, run config, family, checkpoint path) of a run directory or checkpoint."""
    from mmf_pe.models.contract import ContractError, family_of_run

    path = find_checkpoint(source, which)
    state, config = read_checkpoint(path)
    family = family_of_run(config)
    state, config = family.read_run(state, config)
    model = family.build(config)
    try:
        family.load_checkpoint(model, state, path)
    except ContractError as error:
        raise ValueError(str(error)) from None
    return model, config, family, path


def export(source, out_dir, which="best", features=None, threshold=None):
    from mmf_pe.tuners.provenance import features_from_run_config, read_feature_provenance

    model, config, family, path = load_run_model(source, which)
    provenance = None
    if family.reads_region_features:  # the detector settings a server must run on images for this adapter
        features = features or features_from_run_config(config)
        provenance = read_feature_provenance(features) if features else None
    os.makedirs(out_dir, exist_ok=True)
    from mmf_pe.utils.text_normalization import mode_of_run_config

    weights = family.export_adapter(model, out_dir, config, source=os.path.abspath(path),
                                    feature_provenance=provenance, threshold=threshold,
                                    text_normalization=mode_of_run_config(config))
    return weights, path, model


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mmf_pe export-adapter", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="run directory (env.save_dir) or checkpoint file (.ckpt / _final.pth)")
    parser.add_argument("out", help="output directory")
    parser.add_argument("--which", choices=["best", "current", "final"], default="best",
                        help="which checkpoint of a run directory (default: best)")
    parser.add_argument("--features", default=None,
                        help="the training feature LMDB (default: the run config's first train features)")
    parser.add_argument("--threshold", type=float, default=None, help="label threshold for serving (default 0.5)")
    args = parser.parse_args(argv)
    weights, path, model = export(args.source, args.out, args.which, features=args.features, threshold=args.threshold)
    with open(os.path.join(args.out, CONFIG_NAME)) as f:
        exported = json.load(f)
    provenance = exported.get("feature_provenance")
    from mmf_pe.models.contract import get_family

    if not get_family(exported.get("model")).reads_region_features:
        print(f"model {exported.get('model')}: images are read by its own processors (no region detector)")
    else:
        print(f"feature provenance: {provenance['detector']} ({provenance['lmdb']})" if provenance else
              "feature provenance: none (features not written by `mmf_pe extract`): a server accepts precomputed "
              "features only for this adapter")
    size = os.path.getsize(weights)
    full = sum(p.numel() * p.element_size() for p in model.parameters())
    print(f"{path} -> {weights}: {len(trained_state(model))} tensors, {size / 2**20:.2f} MiB "
          f"({100 * size / full:.2f} % of the full model's {full / 2**20:.1f} MiB)")
    return 0
