"""Fixtures for clip_pe: generated PNG memes + a tiny random CLIP (once per session), model builders, MMF runs."""
import os

import pytest
from omegaconf import OmegaConf

from mmf_pe import PACKAGE_DIR, REPO_ROOT

PROJECT = os.path.join(REPO_ROOT, "projects", "clip_pe")


@pytest.fixture(scope="session")
def clip_hmd(tmp_path_factory):
    from mmf_pe.models.clip_pe.synthetic import make_tiny_clip_hmd

    return make_tiny_clip_hmd(str(tmp_path_factory.mktemp("clip_hmd")))


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
    """A config including projects/clip_pe/<base> and tiny.yaml, plus YAML snippets."""
    os.makedirs(directory, exist_ok=True)
    text = "includes:\n" + "".join(f"  - {os.path.join(PROJECT, name)}\n" for name in (base, "tiny.yaml"))
    text += "".join(s if s.endswith("\n") else s + "\n" for s in extra_yaml)
    path = os.path.join(str(directory), f"run_{os.path.splitext(base)[0]}.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path
