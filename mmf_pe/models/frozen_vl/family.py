"""The frozen-encoder family's side of the model contract (mmf_pe.models.contract), for `frozen_vl` and `clip_pe`.

A run's checkpoint holds the trained parts only (head; LoRA / IA3 in pe mode); the frozen encoder comes from the
run's `encoder_dir`. `export-base` copies that directory (config, safetensors weights, tokenizer and image-processor
files; pickle-format weights refused) with the run's text and image processors into `<base>/encoder/`; an adapter
export holds the trained tensors and the run's model config (head, encoder settings, PE method). Served, an uploaded
image goes through the run's own image processor (as MMF's dataset reads it: PIL, RGB), the text through its
tokenizer processor; with a frozen encoder the image and text embeddings are cached in memory by content hash.
"""
import copy
import io
import json
import os
import shutil

import torch

from mmf_pe.models.contract import (
    BASE_CONFIG,
    BASE_FORMAT,
    PICKLE_SUFFIXES,
    ContractError,
    Family,
    RequestError,
    ServedBase,
    register_family,
    write_manifest,
)
from mmf_pe.utils.io import atomic_write_text

ENCODER_DIR = "encoder"
PROCESSORS = ("text_processor", "image_processor")


def _mmf():
    from mmf_pe.compat import install

    install()
    import mmf.utils.env  # noqa: F401  (registers MMF's components)


def _plain(value):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else copy.deepcopy(value)


def run_processors(run_config):
    """The text and image processors of a run's first dataset (type + params, as the dataset builds them)."""
    names = str(run_config.get("datasets") or run_config.get("dataset") or "").split(",")
    configs = run_config.get("dataset_config") or {}
    for name in [n.strip() for n in names if n.strip()] or list(configs):
        processors = (configs.get(name) or {}).get("processors") or {}
        if all(processors.get(k) for k in PROCESSORS):
            return {k: _plain(processors[k]) for k in PROCESSORS}
    raise ContractError(f"the run config names no dataset with both {' and '.join(PROCESSORS)}")


class FrozenVLFamily(Family):
    def __init__(self, name):
        self.names = (name,)

    def model_class(self):
        _mmf()
        from mmf.common.registry import registry

        return registry.get_model_class(self.name)

    def node(self, run_config):
        node = (run_config.get("model_config") or {}).get(self.name)
        if not node:
            raise ContractError(f"the run config has no model_config.{self.name}")
        return _plain(node)

    def _build(self, node):
        from omegaconf import OmegaConf

        cls = self.model_class()
        node = OmegaConf.create(node)
        node.embedding_cache = {"enabled": False, "dir": None}  # exports and servers keep no on-disk cache
        model = cls(node)
        model.build()
        return model

    def build(self, run_config):
        return self._build(self.node(run_config))

    def load_checkpoint(self, model, state, where):
        """The checkpoint holds what trained (frozen encoder weights come from `encoder_dir`): strict on those."""
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        expected = model.state_dict()  # the model's own checkpoint layout (frozen encoder left out)
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(torch.nn.Module.state_dict(model)))
        if missing or unexpected:
            raise ContractError(f"{where}: does not match the model its config describes: missing {missing[:5]}, "
                                f"unexpected {unexpected[:5]}")
        model.load_state_dict(state, strict=False)

    def adapter_extra(self, model, run_config):
        node = self.node(run_config)
        node.pop(model.DIR_KEY, None)  # the base provides the encoder
        return {"model_config": node, "encoder": model.spec.name}

    def export_base(self, model, run_config, out_dir, default_adapter=None, **options):
        """`<out_dir>/encoder/`: the run's encoder directory (safetensors only) + `base_config.json` naming the run's
        processors, with a manifest of every file."""
        source = str(model.config.get(model.DIR_KEY))
        weights = [n for n in os.listdir(source) if n.endswith(".safetensors")]
        if not weights:
            raise ContractError(f"{source}: no safetensors weights (pickle-format .bin files are not served); save "
                                "the encoder with `save_pretrained(..., safe_serialization=True)`")
        target = os.path.join(out_dir, ENCODER_DIR)
        os.makedirs(target, exist_ok=True)
        for name in sorted(os.listdir(source)):
            path = os.path.join(source, name)
            if os.path.isfile(path) and not name.lower().endswith(PICKLE_SUFFIXES) and not name.startswith("."):
                shutil.copyfile(path, os.path.join(target, name))
        processors = run_processors(run_config or {})
        processors["text_processor"].setdefault("params", {}).setdefault("tokenizer_config", {})["type"] = ENCODER_DIR
        node = self.node(run_config or {})
        config = {"format": BASE_FORMAT, "model": self.name, "encoder": model.spec.name,
                  "encoder_dtype": str(node.get("encoder_dtype", "fp32")), "processors": processors,
                  "default_adapter": default_adapter, "files": write_manifest(out_dir)}
        atomic_write_text(os.path.join(out_dir, BASE_CONFIG), json.dumps(config, indent=2) + "\n")
        return out_dir

    def run_inputs(self, run_config, device="cpu"):
        return RunInputs(run_config, device)

    def open_base(self, directory, config, device="cpu", embedding_cache_bytes=0):
        return FrozenVLBase(self, directory, config, device, embedding_cache_bytes)


def pixel_batch(items, device):
    """MMF's SampleList of (pixels, input_ids, input_mask) items (the model's `image`, `input_ids`, `input_mask`)."""
    from mmf.common.sample import SampleList

    batch = SampleList()
    batch.image = torch.stack([p for p, _, _ in items]).to(device)
    batch.input_ids = torch.stack([i for _, i, _ in items]).to(device)
    batch.input_mask = torch.stack([m for _, _, m in items]).to(device)
    return batch


class RunInputs:
    """A run's own processors for its model offline (`mmf_pe robustness`): `image_processor` config as the run's
    dataset has it, the text through its tokenizer processor with normalisation left to the caller (as a served
    base leaves it to the server). `prepare` takes the processed pixel tensor as `image`."""

    def __init__(self, run_config, device="cpu"):
        from omegaconf import OmegaConf

        _mmf()
        from mmf.datasets.processors.processors import Processor

        processors = run_processors(run_config)
        text = processors["text_processor"]
        if "text_normalization" in (text.get("params") or {}):
            text["params"]["text_normalization"] = "none"
        self.text_processor = Processor(OmegaConf.create(text))
        self.image_processor = processors["image_processor"]
        self.device = torch.device(device)
        self._pixel_space = None

    @property
    def pixel_space(self):
        """The run's image processor split at its Normalize (mmf_pe.models.frozen_vl.pixels), for pixel attacks."""
        if self._pixel_space is None:
            from mmf_pe.models.frozen_vl.pixels import PixelSpace

            self._pixel_space = PixelSpace(self.image_processor, "the run's image_processor")
        return self._pixel_space

    def prepare(self, text, image=None, features=None):
        if not isinstance(image, torch.Tensor):
            raise RequestError("a frozen_vl run scores processed pixel tensors: give `image`", "image")
        tokens = self.text_processor({"text": text})
        return image, tokens["input_ids"], tokens["input_mask"]

    def collate(self, texts, items):
        return pixel_batch(items, self.device)


class FrozenVLBase(ServedBase):
    """A frozen CLIP / BLIP / BLIP-2 encoder: images and text through the run's own processors."""

    takes_images = True

    def __init__(self, family, directory, config, device="cpu", embedding_cache_bytes=0):
        super().__init__(family, directory, config, device)
        from mmf_pe.models.frozen_vl.memory_cache import MemoryEmbeddingCache

        self.encoder_dir = os.path.join(directory, ENCODER_DIR)
        self.cache = MemoryEmbeddingCache(embedding_cache_bytes) if embedding_cache_bytes > 0 else None
        self._processors = None

    def row_stages(self, model):
        """The head: FC heads on one meme take the frozen encoder's features of that meme once (LoRA / IA3 in the
        encoder are adapter-specific before the head: those batches run every row)."""
        return ["head"]

    def load_tensors(self):
        from omegaconf import OmegaConf

        _mmf()
        from mmf_pe.models.frozen_vl.encoders import get_encoder, torch_dtype

        cls = self.family.model_class()
        name = str(self.config.get("encoder") or "clip")
        spec = get_encoder(name, OmegaConf.create({"encoder": name}))
        what = f"{self.directory}/{ENCODER_DIR}"
        encoder = spec.load(self.encoder_dir, torch_dtype(self.config.get("encoder_dtype", "fp32")), what)
        # tied weights (e.g. a language model's lm_head and embeddings) under each of their names
        return {f"{cls.ENCODER_ATTR}.{n}": p.detach() for n, p in encoder.named_parameters(remove_duplicate=False)}

    def kind_key(self, adapter_config, tensors, where):
        node = adapter_config.get("model_config")
        if not isinstance(node, dict):
            raise ContractError(f"{where}: adapter_config.json has no model_config (export it again with this "
                                "version's `mmf_pe export-adapter`)")
        if adapter_config.get("encoder") != self.config.get("encoder"):
            raise ContractError(f"{where}: trained on a {adapter_config.get('encoder')!r} encoder, this base holds "
                                f"{self.config.get('encoder')!r}")
        return json.dumps([adapter_config["training_mode"], node], sort_keys=True, default=str)

    def build_model(self, adapter_config, tensors, where):
        node = dict(adapter_config["model_config"])
        node[self.family.model_class().DIR_KEY] = self.encoder_dir
        node["training_mode"] = adapter_config["training_mode"]
        model = self.family._build(node)
        if self.cache is not None and model.encoders_frozen:  # LoRA / IA3 change the encoder per adapter: no cache
            model.cache = self.cache.view([self.config.get("encoder"), model.spec.settings()])
        return model

    # -- requests ------------------------------------------------------------------------------------------------
    @property
    def processors(self):
        if self._processors is None:
            from omegaconf import OmegaConf

            _mmf()
            from mmf.datasets.processors.processors import Processor

            configs = copy.deepcopy(self.config["processors"])
            tokenizer = configs["text_processor"]["params"]["tokenizer_config"]
            tokenizer["type"] = os.path.join(self.directory, str(tokenizer["type"]))
            self._processors = {k: Processor(OmegaConf.create(v)) for k, v in configs.items()}
        return self._processors

    @property
    def pixel_space(self):
        """The base's image processor split at its Normalize (mmf_pe.models.frozen_vl.pixels), for pixel attacks."""
        from mmf_pe.models.frozen_vl.pixels import PixelSpace

        return PixelSpace(self.config["processors"]["image_processor"], f"{self.directory}: image_processor")

    def process_image(self, image, filename="image"):
        """An image -> the pixel tensor, as MMF's dataset reads an image file (PIL, RGB, the processor). `image`: a
        decoded PIL image (the server's one decode of an upload, mmf_pe.serve.images.decode_rgb) or an upload's
        bytes, decoded here."""
        from PIL import Image

        try:
            if isinstance(image, Image.Image):
                rgb = image if image.mode == "RGB" else image.convert("RGB")
            else:
                with Image.open(io.BytesIO(image)) as opened:
                    rgb = opened.convert("RGB")
        except Exception as error:  # noqa: BLE001 - any undecodable upload is the client's problem
            raise RequestError(f"{filename}: the encoder's image processor cannot read it ({type(error).__name__}: "
                               f"{error})", "image") from None
        try:
            return self.processors["image_processor"](rgb)
        except Exception as error:  # noqa: BLE001
            raise RequestError(f"{filename}: the encoder's image processor failed ({type(error).__name__}: {error})",
                               "image") from None

    def prepare(self, text, image=None, features=None):
        if features is not None:
            raise RequestError(f"the {self.family.name} base ({self.config.get('encoder')}) encodes images itself: "
                               "send an image, not precomputed features", "features")
        if image is None:
            raise RequestError(f"the {self.family.name} base needs an image (multipart field 'image')", "image")
        pixels = image if isinstance(image, torch.Tensor) else self.process_image(image)
        tokens = self.processors["text_processor"]({"text": text})
        return pixels, tokens["input_ids"], tokens["input_mask"]

    def collate(self, texts, items):
        return pixel_batch(items, self.device)

    def describe(self):
        described = super().describe()
        described["encoder"] = self.config.get("encoder")
        if self.cache is not None:
            described["embedding_cache"] = self.cache.describe()
        return described


register_family(FrozenVLFamily("frozen_vl"))
register_family(FrozenVLFamily("clip_pe"))
