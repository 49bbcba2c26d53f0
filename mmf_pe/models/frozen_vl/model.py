"""`frozen_vl`: meme classifiers on a frozen vision-language encoder (CLIP, BLIP, BLIP-ITM, BLIP-2; chosen by
`model_config.frozen_vl.encoder`) with a trained fusion head, the source systems' recipe.

Modes as for visual_bert_pe (`training_mode` alone, null = fc; resolved by the PE core): fc = frozen encoder, only
the head trains (the seed systems); pe = a PE method of the core (LoRA, IA3; see frozen_vl/pe.py) on the chosen towers
(`pe_towers`) + head; full = everything trains. With a frozen encoder the embedding cache makes later epochs cost
only the head, and checkpoints leave out the frozen weights (re-read from `encoder_dir`). `encoder_dtype`
(fp32 | bf16 | fp16 | auto) loads the encoder in half precision; the head stays fp32.
"""
import contextlib
import logging
import os

import torch
from mmf.common.registry import registry
from mmf.models.base_model import BaseModel
from omegaconf import OmegaConf

from mmf_pe import PACKAGE_DIR
from mmf_pe.models.frozen_vl.cache import EmbeddingCache, cache_fingerprint, image_keys, text_keys
from mmf_pe.models.frozen_vl.encoders import get_encoder, module_bytes, torch_dtype
from mmf_pe.models.frozen_vl.encoders.base import weights_fingerprint
from mmf_pe.models.frozen_vl.heads import StreamHead, StreamHeadConfig, describe_memory, format_bytes, head_memory
from mmf_pe.models.frozen_vl.pe import (
    DEFAULT_MODE,
    chosen_towers,
    inject,
    pe_config_for,
    pe_settings,
    upgrade_node,
    with_encoder_defaults,
)
from mmf_pe.models.pe_node import yaml_with_method_nodes
from mmf_pe.tuners import any_encoder_methods, resolve_training_mode

logger = logging.getLogger(__name__)
GIB = 1024 ** 3


@registry.register_model("frozen_vl")
class FrozenVL(BaseModel):
    MODEL_NAME = "frozen_vl"
    ENCODER_ATTR = "encoder"      # the HF model's attribute (and checkpoint key prefix)
    DIR_KEY = "encoder_dir"

    @classmethod
    def config_path(cls):
        return yaml_with_method_nodes(os.path.join(PACKAGE_DIR, "configs", "models", f"{cls.MODEL_NAME}.yaml"),
                                      cls.MODEL_NAME, any_encoder_methods())

    def encoder_name(self):
        return str(self.config.get("encoder", "clip"))

    @property
    def backbone(self):
        return getattr(self, self.ENCODER_ATTR)

    def build(self):
        config = self.config
        upgrade_node(config, self.MODEL_NAME)
        self.training_mode = resolve_training_mode(config, DEFAULT_MODE, self.MODEL_NAME)
        pe_node = pe_settings(config.get("pe", None), self.MODEL_NAME)
        self.pe_config = pe_config_for(pe_node, self.MODEL_NAME)
        self.spec = get_encoder(self.encoder_name(), config)
        dtype_name = self._encoder_dtype_name(str(config.get("encoder_dtype", "fp32")))
        dtype = torch_dtype(dtype_name, f"model_config.{self.MODEL_NAME}.encoder_dtype")
        if self.training_mode == "full" and dtype != torch.float32:
            raise ValueError(f"{self.MODEL_NAME}: training_mode full updates the encoder's own weights, which an "
                             f"optimizer should not keep in {dtype_name}; use encoder_dtype fp32 (half precision is "
                             "for a frozen encoder, or LoRA on it)")
        what = f"model_config.{self.MODEL_NAME}.{self.DIR_KEY}"
        setattr(self, self.ENCODER_ATTR, self.spec.load(config.get(self.DIR_KEY), dtype, what))
        self.streams = self.spec.streams(self.backbone)
        self._log(f"{self._prefix()} encoder {self.spec.label} ({dtype_name}): "
                  f"{sum(p.numel() for p in self.backbone.parameters()):,} parameters, "
                  f"{format_bytes(module_bytes(self.backbone))} in memory; streams to the head: "
                  + ", ".join(f"{s.name} {s.width}" for s in self.streams))

        head_config = StreamHeadConfig(
            streams=[(s.name, s.width) for s in self.streams], fusion=str(config.fusion),
            map_dim=int(config.map_dim), num_mapping_layers=int(config.num_mapping_layers),
            num_pre_output_layers=int(config.num_pre_output_layers), dropout=list(config.dropout),
            num_labels=int(config.num_labels),
        )
        self.head_memory = head_memory(head_config, self._batch_size())
        self._check_head_memory(head_config)
        self.head = StreamHead(head_config)

        self.pe_parameter_names = []
        if self.training_mode == "pe":
            towers = chosen_towers(self.spec.towers(self.backbone), config.get("pe_towers", "all"),
                                   f"model_config.{self.MODEL_NAME}.pe_towers")
            settings = with_encoder_defaults(pe_node, self.spec, self.backbone, towers, self.MODEL_NAME)
            self.pe_config = pe_config_for(settings, self.MODEL_NAME)
            self.pe_parameter_names = inject(self.backbone, self.spec, self.pe_config, towers, self.MODEL_NAME)
        self._set_trainable()
        self.cache = self._open_cache()

    # -- setup -------------------------------------------------------------------------------------------------
    def _encoder_dtype_name(self, requested):
        """`encoder_dtype: auto`: the core resolver's choice for the device this run uses (bf16 where native, fp16 on
        a CUDA GPU without bf16, else fp32), fp32 whenever the encoder itself trains (full); other values as given."""
        if requested != "auto":
            return requested
        if self.training_mode == "full":
            self._log(f"{self.MODEL_NAME}: encoder_dtype auto -> fp32 (training_mode full trains the encoder's "
                      "weights)")
            return "fp32"
        from mmf_pe.utils.precision import resolve_precision

        device = registry.get("current_device", no_warning=True) or ("cuda" if torch.cuda.is_available() else "cpu")
        decision = resolve_precision("auto", device)
        self._log(f"{self.MODEL_NAME}: encoder_dtype auto -> {decision.describe()}")
        return decision.name

    def _prefix(self):
        return f"{self.MODEL_NAME}[{self.spec.name}]"

    def _batch_size(self):
        global_config = registry.get("config", no_warning=True)
        try:
            return int(global_config.training.batch_size)
        except Exception:
            return 64

    def _check_head_memory(self, head_config):
        """Log what the head needs; refuse one whose training state exceeds `head_memory_limit_gb`."""
        message = (f"{self._prefix()} {head_config.fusion} fusion, map_dim {head_config.map_dim}: "
                   f"{describe_memory(self.head_memory)}")
        self._log(message)
        limit = self.config.get("head_memory_limit_gb", None)
        if limit is not None and self.head_memory["training_bytes"] > float(limit) * GIB:
            raise ValueError(
                f"{message}. That exceeds model_config.{self.MODEL_NAME}.head_memory_limit_gb={limit}. Use a smaller "
                "map_dim (a cross head's first pre-output layer has map_dim^3 weights: 1.07 B at 1024, 2.1 M at 128),"
                " num_pre_output_layers=0 (the seed's cross recipe), or raise the limit if the device has the memory."
            )

    def _log(self, message):
        if self.writer is not None:
            self.writer.write(message)
        else:
            logger.info(message)

    def _set_trainable(self):
        full = self.training_mode == "full"
        added = set(self.pe_parameter_names)
        for name, parameter in self.backbone.named_parameters():
            parameter.requires_grad = full or name in added
        for parameter in self.head.parameters():
            parameter.requires_grad = True
        self.encoders_frozen = not any(p.requires_grad for p in self.backbone.parameters())

    def _open_cache(self):
        cache_config = self.config.get("embedding_cache", None)
        if cache_config is None or not cache_config.get("enabled", False):
            return None
        if not self.encoders_frozen:
            raise ValueError(f"{self.MODEL_NAME}: embedding_cache needs frozen encoders (training_mode fc), but "
                             f"training_mode is {self.training_mode}; set "
                             f"model_config.{self.MODEL_NAME}.embedding_cache.enabled=false")
        preprocessing = self._preprocessing_settings()
        settings = self.spec.settings()
        fingerprint = cache_fingerprint(weights_fingerprint(self.backbone), settings, preprocessing)
        meta = {"encoder_dir": str(self.config.get(self.DIR_KEY)), "embedding": settings,
                "preprocessing": preprocessing}
        cache = EmbeddingCache(str(cache_config.dir), fingerprint, meta)
        self._log(f"{self.MODEL_NAME} embedding cache: {cache.path} ({len(cache)} entries)")
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
            self.backbone.eval()  # a frozen encoder always runs as at inference
        return self

    def _cache_keys(self, stream, pixels, input_ids, mask):
        """Per sample: the key of the model input the stream depends on (the plain image / text key for the
        streams named image / text, so clip_pe caches keep their layout)."""
        if stream.kind == "image":
            keys = image_keys(pixels)
        elif stream.kind == "text":
            keys = text_keys(input_ids, mask)
        else:
            keys = [f"{i}|{t}" for i, t in zip(image_keys(pixels), text_keys(input_ids, mask))]
        return keys if stream.name == stream.kind else [f"{stream.name}|{k}" for k in keys]

    @contextlib.contextmanager
    def input_gradients(self):
        """Within: `encode` runs the encoder itself (no embedding cache) with autograd on even when it is frozen, so
        a loss differentiates to the pixels (white-box PGD: `mmf_pe robustness`, `training.augment`)."""
        previous = getattr(self, "_input_gradients", False)
        self._input_gradients = True
        try:
            yield self
        finally:
            self._input_gradients = previous

    def encode(self, sample_list):
        """The streams' features of a batch (a tuple in stream order), through the cache where there is one."""
        pixels = sample_list.image
        input_ids = sample_list.input_ids
        mask = getattr(sample_list, "input_mask", None)
        if mask is None:
            mask = torch.ones_like(input_ids)
        names = [s.name for s in self.streams]

        def compute(stream_names, indices=None):
            if indices is None:
                return self.spec.encode(self.backbone, stream_names, pixels, input_ids, mask)
            return self.spec.encode(self.backbone, stream_names, pixels[indices], input_ids[indices], mask[indices])

        to_inputs = getattr(self, "_input_gradients", False)
        with torch.set_grad_enabled(torch.is_grad_enabled() and (to_inputs or not self.encoders_frozen)):
            if self.cache is None or to_inputs:
                features = compute(names)
                return tuple(features[n] for n in names)
            return tuple(
                self.cache.lookup(self._cache_keys(s, pixels, input_ids, mask),
                                  lambda indices, s=s: compute([s.name], indices)[s.name], pixels.device)
                for s in self.streams
            )

    def forward(self, sample_list):
        head_dtype = self.head.output.weight.dtype
        return {"scores": self.head(*(f.to(head_dtype) for f in self.encode(sample_list)))}

    # -- parameters and checkpoints -----------------------------------------------------------------------------
    def get_optimizer_parameters(self, config):
        """The trained parameters; those the PE method marks (IA3's scales, ones at init) take no weight decay."""
        trained = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        no_decay = {n for n, _ in trained if self.training_mode == "pe" and self.pe_config.takes_no_weight_decay(n)}
        groups = [{"params": [p for n, p in trained if n not in no_decay]}]
        if no_decay:
            groups.append({"params": [p for n, p in trained if n in no_decay], "weight_decay": 0.0})
        return groups

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        """Without the frozen encoder weights (re-read from the directory at build) unless save_frozen_encoders."""
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        if not self.config.get("save_frozen_encoders", False):
            root = f"{prefix}{self.ENCODER_ATTR}."
            for name, parameter in self.backbone.named_parameters():
                if not parameter.requires_grad:
                    state.pop(f"{root}{name}", None)
            for name, _ in self.backbone.named_buffers():
                state.pop(f"{root}{name}", None)
        return state

    def parameter_counts(self):
        """total / trained / adapter (LoRA, IA3) parameters, the columns of the reports' Table I."""
        named = dict(self.backbone.named_parameters())
        return {
            "total": sum(p.numel() for p in self.parameters()),
            "trained": sum(p.numel() for p in self.parameters() if p.requires_grad),
            "adapter": sum(named[n].numel() for n in self.pe_parameter_names),
        }

    def mode_label(self):
        """The name reports group runs by: `<encoder>-<fusion>/<mode>[/<method>]`, e.g. `blip2-concat/fc`."""
        method = f"/{self.pe_config.method}" if self.training_mode == "pe" else ""
        return f"{self.spec.name}-{self.head.config.fusion}/{self.training_mode}{method}"

    def describe(self):
        counts = self.parameter_counts()
        method = f" ({self.pe_config.method})" if self.training_mode == "pe" else ""
        cache = f", embedding cache {self.cache.path}" if self.cache is not None else ""
        return (
            f"{self._prefix()} mode={self.training_mode}{method} fusion={self.head.config.fusion} "
            f"map_dim={self.head.config.map_dim}: total {counts['total']:,}, trained {counts['trained']:,}, "
            f"adapter {counts['adapter']:,}; {describe_memory(self.head_memory)}{cache}"
        )
