"""Helpers for the frozen_vl tests: model builders, batches, run configs (the session data is in conftest.py)."""
import os

import torch
from omegaconf import OmegaConf

import mmf_pe_testing
from mmf_pe import PACKAGE_DIR, REPO_ROOT

PROJECT = os.path.join(REPO_ROOT, "projects", "frozen_vl")
# test id -> (encoder, tiny directory): blip2 with a tiny OPT and with a tiny T5 language model
ENCODERS = {"clip": ("clip", "clip"), "blip": ("blip", "blip"), "blip_itm": ("blip_itm", "blip_itm"),
            "blip2_opt": ("blip2", "blip2"), "blip2_t5": ("blip2", "blip2_t5")}
TEXTS = ["nice cat", "gross dog day", "they look like this", "love"]


def model_config(encoder_dir, encoder, **overrides):
    defaults = OmegaConf.load(os.path.join(PACKAGE_DIR, "configs", "models", "frozen_vl.yaml")).model_config.frozen_vl
    return OmegaConf.merge(defaults, {"encoder": encoder, "encoder_dir": encoder_dir, "map_dim": 8,
                                      "embedding_cache": {"dir": "unused"}}, overrides)


def build(vl_hmd, key, **overrides):
    """A built frozen_vl of one ENCODERS entry (no init_losses: tests call forward() and the loss directly)."""
    from mmf_pe.models.frozen_vl import FrozenVL

    encoder, tiny = ENCODERS[key]
    model = FrozenVL(model_config(vl_hmd[f"{tiny}_dir"], encoder, **overrides))
    model.build()
    return model


def tokenizer_for(vl_hmd, key):
    from mmf_pe.models.frozen_vl.processors import CLIPTokenizerProcessor, HFTokenizerProcessor

    encoder, tiny = ENCODERS[key]
    cls = CLIPTokenizerProcessor if encoder == "clip" else HFTokenizerProcessor
    return cls(OmegaConf.create({"tokenizer_config": {"type": vl_hmd[f"{tiny}_dir"]}, "max_seq_length": 12}))


def batch(vl_hmd, key, n=4, seed=0):
    return samples_from(tokenizer_for(vl_hmd, key), n=n, seed=seed)


def samples_from(tokenizer, n=4, image_size=32, seed=0):
    """A SampleList of n memes: random images, TEXTS through `tokenizer`, labels 0 1 1 0."""
    from mmf.common.sample import SampleList

    texts = [tokenizer({"text": t}) for t in TEXTS[:n]]
    samples = SampleList()
    samples.image = torch.randn(n, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    samples.input_ids = torch.stack([t["input_ids"] for t in texts])
    samples.input_mask = torch.stack([t["input_mask"] for t in texts])
    samples.targets = torch.tensor([0, 1, 1, 0][:n])
    samples.dataset_name, samples.dataset_type = "hateful_memes", "train"
    return samples


def grads_after_step(model, samples):
    model.train()
    output = model.forward(samples)
    torch.nn.functional.cross_entropy(output["scores"], samples.targets).backward()
    return output, {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def write_run_config(directory, base, *extra_yaml):
    """A config including projects/frozen_vl/<base> and its tiny.yaml, plus YAML snippets."""
    return mmf_pe_testing.write_run_config(directory, base, *extra_yaml, project="frozen_vl")
