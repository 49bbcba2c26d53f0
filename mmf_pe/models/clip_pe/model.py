"""`clip_pe`: a meme classifier on CLIP's image and text encoders with a trained fusion head (Hate-CLIPper-style).

Modes as for visual_bert_pe (`training_mode`, or `freeze_base` + `pe.method`): fc = frozen encoders, only the head
trains (the seed system); pe = LoRA on the encoders (peft) + head; full = everything trains. With frozen encoders an
embedding cache (cache.py) makes later epochs cost only the head, and checkpoints leave out the frozen CLIP weights
(they are re-read from `clip_dir`), so a ViT-L run does not write 1.7 GB per checkpoint.
"""
import logging
import os

import torch
from mmf.common.registry import registry
from mmf.models.base_model import BaseModel
from omegaconf import OmegaConf

from mmf_pe import PACKAGE_DIR
from mmf_pe.models.clip_pe import encoders
from mmf_pe.models.clip_pe.cache import EmbeddingCache, cache_fingerprint, image_keys, text_keys
from mmf_pe.models.clip_pe.heads import FusionHead, HeadConfig, describe_memory, head_memory
from mmf_pe.models.visual_bert_pe import resolve_training_mode
from mmf_pe.tuners import PEConfig

logger = logging.getLogger(__name__)
GIB = 1024 ** 3
PE_METHODS = ("lora",)


@registry.register_model("clip_pe")
class CLIPPE(BaseModel):
    @classmethod
    def config_path(cls):
        return os.path.join(PACKAGE_DIR, "configs", "models", "clip_pe.yaml")

    def build(self):
        config = self.config
        self.training_mode = resolve_training_mode(config)
        self.pe_config = PEConfig.from_config(config.get("pe", None))
        self.embedding = str(config.get("embedding", "pooled"))
        self.clip = encoders.load_clip(config.clip_dir)
        image_dim, text_dim = encoders.embedding_dims(self.clip, self.embedding)

        head_config = HeadConfig(
            image_dim=image_dim, text_dim=text_dim, fusion=str(config.fusion), map_dim=int(config.map_dim),
            num_mapping_layers=int(config.num_mapping_layers), num_pre_output_layers=int(config.num_pre_output_layers),
            dropout=list(config.dropout), num_labels=int(config.num_labels),
        )
        self.head_memory = head_memory(head_config, self._batch_size())
        self._check_head_memory(head_config)
        self.head = FusionHead(head_config)

        self.pe_parameter_names = []
        if self.training_mode == "pe":
            if self.pe_config.method not in PE_METHODS:
                raise ValueError(f"clip_pe: pe.method must be one of {PE_METHODS}, got {self.pe_config.method!r}")
            self.pe_parameter_names = encoders.inject_lora(self.clip, self.pe_config)
        self._set_trainable()
        self.cache = self._open_cache()

    # -- setup -------------------------------------------------------------------------------------------------
    def _batch_size(self):
        global_config = registry.get("config", no_warning=True)
        try:
            return int(global_config.training.batch_size)
        except Exception:
            return 64

    def _check_head_memory(self, head_config):
        """Log what the head needs; refuse one whose training state exceeds `head_memory_limit_gb`."""
        message = (f"clip_pe {head_config.fusion} fusion, map_dim {head_config.map_dim}: "
                   f"{describe_memory(self.head_memory)}")
        self._log(message)
        limit = self.config.get("head_memory_limit_gb", None)
        if limit is not None and self.head_memory["training_bytes"] > float(limit) * GIB:
            raise ValueError(
                f"{message}. That exceeds model_config.clip_pe.head_memory_limit_gb={limit}. Use a smaller map_dim "
                "(a cross head's first pre-output layer has map_dim^3 weights: 1.07 B at 1024, 2.1 M at 128), "
                "num_pre_output_layers=0 (the seed's cross recipe), or raise the limit if the device has the memory."
            )

    def _log(self, message):
        if self.writer is not None:
            self.writer.write(message)
        else:
            logger.info(message)

    def _set_trainable(self):
        full = self.training_mode == "full"
        added = set(self.pe_parameter_names)
        for name, parameter in self.clip.named_parameters():
            parameter.requires_grad = full or name in added
        for parameter in self.head.parameters():
            parameter.requires_grad = True
        self.encoders_frozen = not any(p.requires_grad for p in self.clip.parameters())

    def _open_cache(self):
        cache_config = self.config.get("embedding_cache", None)
        if cache_config is None or not cache_config.get("enabled", False):
            return None
        if not self.encoders_frozen:
            raise ValueError(f"clip_pe: embedding_cache needs frozen encoders (training_mode fc), but training_mode "
                             f"is {self.training_mode}; set model_config.clip_pe.embedding_cache.enabled=false")
        preprocessing = self._preprocessing_settings()
        fingerprint = cache_fingerprint(encoders.weights_fingerprint(self.clip), self.embedding, preprocessing)
        meta = {"clip_dir": str(self.config.clip_dir), "embedding": self.embedding, "preprocessing": preprocessing}
        cache = EmbeddingCache(str(cache_config.dir), fingerprint, meta)
        self._log(f"clip_pe embedding cache: {cache.path} ({len(cache)} entries)")
        return cache

    def _preprocessing_settings(self):
        """The image and text processors of the run's datasets (part of the cache fingerprint)."""
        global_config = registry.get("config", no_warning=True)
        settings = {}
        if global_config is None:
            return settings
        datasets = global_config.get("datasets", None) or ""
        names = datasets.split(",") if isinstance(datasets, str) else list(datasets)
        for name in (n.strip() for n in names if n.strip()):
            processors = global_config.get("dataset_config", {}).get(name, {}).get("processors", {})
            for key in ("image_processor", "text_processor"):
                if key in processors:
                    settings[f"{name}.{key}"] = OmegaConf.to_container(processors[key], resolve=True)
        return settings

    # -- forward -----------------------------------------------------------------------------------------------
    def train(self, mode=True):
        super().train(mode)
        if self.encoders_frozen:
            self.clip.eval()  # frozen encoders always run as at inference
        return self

    def encode(self, sample_list):
        """Image and text embeddings of a batch, through the cache where there is one."""
        pixels = sample_list.image
        input_ids = sample_list.input_ids
        mask = getattr(sample_list, "input_mask", None)
        if mask is None:
            mask = torch.ones_like(input_ids)

        def images(indices=None):
            selected = pixels if indices is None else pixels[indices]
            return encoders.encode_images(self.clip, selected, self.embedding)

        def texts(indices=None):
            ids, m = (input_ids, mask) if indices is None else (input_ids[indices], mask[indices])
            return encoders.encode_texts(self.clip, ids, m, self.embedding)

        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoders_frozen):
            if self.cache is None:
                return images(), texts()
            return (self.cache.lookup(image_keys(pixels), images, pixels.device),
                    self.cache.lookup(text_keys(input_ids, mask), texts, input_ids.device))

    def forward(self, sample_list):
        image_embeds, text_embeds = self.encode(sample_list)
        head_dtype = self.head.output.weight.dtype
        return {"scores": self.head(image_embeds.to(head_dtype), text_embeds.to(head_dtype))}

    # -- parameters and checkpoints -----------------------------------------------------------------------------
    def get_optimizer_parameters(self, config):
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        """Without the frozen CLIP weights (re-read from clip_dir at build) unless save_frozen_encoders is set."""
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        if not self.config.get("save_frozen_encoders", False):
            for name, parameter in self.clip.named_parameters():
                if not parameter.requires_grad:
                    state.pop(f"{prefix}clip.{name}", None)
            for name, _ in self.clip.named_buffers():
                state.pop(f"{prefix}clip.{name}", None)
        return state

    def parameter_counts(self):
        """total / trained / adapter (LoRA) parameters, the columns of the reports' Table I."""
        named = dict(self.clip.named_parameters())
        return {
            "total": sum(p.numel() for p in self.parameters()),
            "trained": sum(p.numel() for p in self.parameters() if p.requires_grad),
            "adapter": sum(named[n].numel() for n in self.pe_parameter_names),
        }

    def mode_label(self):
        """The name reports group runs by: fusion + mode (+ PE method), e.g. `clip-cross/fc`, `clip-cross/pe/lora`."""
        method = f"/{self.pe_config.method}" if self.training_mode == "pe" else ""
        return f"clip-{self.head.config.fusion}/{self.training_mode}{method}"

    def describe(self):
        counts = self.parameter_counts()
        method = f" ({self.pe_config.method})" if self.training_mode == "pe" else ""
        cache = f", embedding cache {self.cache.path}" if self.cache is not None else ""
        return (
            f"clip_pe mode={self.training_mode}{method} fusion={self.head.config.fusion} "
            f"map_dim={self.head.config.map_dim}: total {counts['total']:,}, trained {counts['trained']:,}, "
            f"adapter {counts['adapter']:,}; {describe_memory(self.head_memory)}{cache}"
        )
