"""What every frozen vision-language encoder of the family provides to the model: loading from a local directory,
the feature streams it hands the head, how each stream is computed, and where LoRA may go.

A stream is `(name, kind, width)`; `kind` says what its cache key depends on: `image` (the pixels), `text` (the
tokens) or `pair` (both, e.g. BLIP-ITM's fused [CLS], which sees the image through cross-attention).
"""
import hashlib
import os
from dataclasses import dataclass

import torch

from mmf_pe.utils.fingerprint import tensors_digest

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
STREAM_KINDS = ("image", "text", "pair")


@dataclass(frozen=True)
class Stream:
    name: str
    kind: str
    width: int


def torch_dtype(name, key="encoder_dtype"):
    if str(name) not in DTYPES:
        raise ValueError(f"{key} must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[str(name)]


def check_encoder_dir(path, what, label, example):
    """A local Hugging Face directory (config.json + weights + tokenizer) or a clear error; nothing is downloaded."""
    if path is None or not os.path.isdir(str(path)) or not os.path.isfile(os.path.join(str(path), "config.json")):
        raise FileNotFoundError(
            f"{what}: {path!r} is not a local {label} directory (config.json, weights, tokenizer files). Put a "
            f"transformers {label} checkpoint there, e.g. {example} (`<Model>.save_pretrained` + "
            "`<Processor>.save_pretrained`), or override the path. Nothing is downloaded."
        )
    return str(path)


def check_model_type(config_path, expected, what):
    """Refuse a directory holding another architecture before loading it (e.g. a CLIP where BLIP-2 is expected)."""
    import json

    with open(os.path.join(config_path, "config.json")) as f:
        found = json.load(f).get("model_type")
    if found not in expected:
        raise ValueError(f"{what}: {config_path}/config.json has model_type {found!r}; this encoder needs "
                         f"{' or '.join(map(repr, expected))}")


def check_image_size(pixel_values, image_size, label):
    if tuple(pixel_values.shape[-2:]) != (image_size, image_size):
        raise ValueError(
            f"{label}: images are {tuple(pixel_values.shape[-2:])} but this encoder expects {image_size}x{image_size}; "
            f"set the image_processor's Resize/CenterCrop to {image_size}"
        )


class FrozenEncoder:
    """Base of the encoders (`clip`, `blip`, `blip_itm`, `blip2`); subclasses fill in the class attributes."""

    name = ""
    label = ""           # in messages: "CLIP", "BLIP", ...
    example = ""         # an example directory for the missing-directory message
    model_types = ()     # accepted config.json model_type values
    # The PE methods' defaults on this encoder, {method: {key: value}}: exact module paths relative to one layer of a
    # tower (the PE core's one meaning of target_modules). A method without an entry needs pe.target_modules set.
    pe_defaults = {}

    def __init__(self, config):
        self.config = config  # model_config.<model> (for encoder-specific keys)

    # -- loading --------------------------------------------------------------------------------------------------
    def hf_class(self):
        raise NotImplementedError

    def load(self, path, dtype, what):
        path = check_encoder_dir(path, what, self.label, self.example)
        check_model_type(path, self.model_types, what)
        return self.hf_class().from_pretrained(path, dtype=dtype)

    # -- what the head receives -----------------------------------------------------------------------------------
    def streams(self, model):
        raise NotImplementedError

    def image_size(self, model):
        return model.config.vision_config.image_size

    def encode(self, model, names, pixels, input_ids, mask):
        """{stream name: [batch, width]} for the streams `names` (only what they need is computed)."""
        raise NotImplementedError

    def settings(self):
        """What, besides the weights and preprocessing, decides the features (part of the cache fingerprint)."""
        return {"encoder": self.name}

    # -- PE methods (LoRA, IA3) -------------------------------------------------------------------------------------
    def towers(self, model):
        """{tower name: dotted path of its ModuleList of layers}; `model_config.<model>.pe_towers` picks among them."""
        raise NotImplementedError


def weights_fingerprint(module):
    """The identity of the encoder weights (names, dtypes, shapes, bytes), short enough for a cache folder name."""
    return tensors_digest(module.state_dict(), hashlib.blake2b(digest_size=16))


def module_bytes(module):
    """Bytes of a module's parameters and buffers (the encoder memory the build log states)."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def masked_mean(hidden, mask):
    """Mean over the positions the attention mask keeps: [batch, seq, dim] -> [batch, dim]."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
