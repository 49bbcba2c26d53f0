"""Helpers for the clip_pe tests: model builders and run configs (the session data is in conftest.py)."""
import os

from omegaconf import OmegaConf

import mmf_pe_testing
from mmf_pe import PACKAGE_DIR


def model_config(clip_dir, **overrides):
    """The model's YAML defaults with a tiny head, resolved without a global MMF config."""
    defaults = OmegaConf.load(os.path.join(PACKAGE_DIR, "configs", "models", "clip_pe.yaml")).model_config.clip_pe
    config = OmegaConf.merge(defaults, {"clip_dir": clip_dir, "map_dim": 8, "embedding_cache": {"dir": "unused"}},
                             overrides)
    return config


def build_model(clip_dir, **overrides):
    from mmf_pe.models.clip_pe import CLIPPE

    model = CLIPPE(model_config(clip_dir, **overrides))
    model.build()  # no init_losses: MMF's Losses needs a global config; tests call forward() and the loss directly
    return model


def write_clip_run_config(directory, base, *extra_yaml):
    """A config including projects/clip_pe/<base> and its tiny.yaml, plus YAML snippets."""
    return mmf_pe_testing.write_run_config(directory, base, *extra_yaml, project="clip_pe")
