"""CLIP from a local directory: loading, pooled/projected embeddings, LoRA through peft, a weights fingerprint."""
import hashlib
import re

from mmf_pe.models.clip_pe.processors import check_clip_dir
from mmf_pe.utils.fingerprint import tensors_digest

EMBEDDINGS = ("pooled", "projected")
LORA_ENCODERS = {"both": ("vision_model", "text_model"), "vision": ("vision_model",), "text": ("text_model",)}


def load_clip(clip_dir):
    from transformers import CLIPModel

    path = check_clip_dir(clip_dir, "model_config.clip_pe.clip_dir")
    return CLIPModel.from_pretrained(path)


def embedding_dims(clip, embedding):
    """Widths of the image and text embeddings the head receives."""
    if embedding == "pooled":
        return clip.config.vision_config.hidden_size, clip.config.text_config.hidden_size
    if embedding == "projected":
        return clip.config.projection_dim, clip.config.projection_dim
    raise ValueError(f"model_config.clip_pe.embedding must be one of {EMBEDDINGS}, got {embedding!r}")


def encode_images(clip, pixel_values, embedding):
    image_size = clip.config.vision_config.image_size
    if tuple(pixel_values.shape[-2:]) != (image_size, image_size):
        raise ValueError(
            f"clip_pe: images are {tuple(pixel_values.shape[-2:])} but this CLIP expects {image_size}x{image_size}; "
            f"set the image_processor's Resize/CenterCrop to {image_size}"
        )
    pooled = clip.vision_model(pixel_values=pixel_values).pooler_output
    return pooled if embedding == "pooled" else clip.visual_projection(pooled)


def encode_texts(clip, input_ids, attention_mask, embedding):
    pooled = clip.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    return pooled if embedding == "pooled" else clip.text_projection(pooled)


TOWER_CONFIGS = {"vision_model": "vision_config", "text_model": "text_config"}


def lora_target_regex(clip, pe_config, target_modules, encoders="both"):
    """A regex matching only the attention projections meant (full-name match, as peft applies it). `pe.layers`
    (negative = from the top) and `pe.top_k_layers` are resolved per tower, whose depths may differ."""
    if encoders not in LORA_ENCODERS:
        raise ValueError(f"pe.encoders must be one of {sorted(LORA_ENCODERS)}, got {encoders!r}")
    modules = "|".join(re.escape(m) for m in target_modules)
    towers = []
    for tower in LORA_ENCODERS[encoders]:
        depth = getattr(clip.config, TOWER_CONFIGS[tower]).num_hidden_layers
        layers = "|".join(str(i) for i in pe_config.selected_layers(depth))
        towers.append(rf"{tower}\.encoder\.layers\.(?:{layers})")
    return rf"(?:{'|'.join(towers)})\.(?:self_attn|mlp)\.(?:{modules})"


def inject_lora(clip, pe_config):
    """LoRA on CLIP's encoders through peft; returns the names (relative to `clip`) of the parameters it added.

    Keys (model_config.clip_pe.pe): rank (8), alpha (2*rank), dropout (0.0), target_modules ([q_proj, v_proj]),
    encoders (both | vision | text), layers / top_k_layers (null = all).
    """
    from peft import LoraConfig, inject_adapter_in_model

    rank = int(pe_config.rank)
    targets = pe_config.target_modules or ["q_proj", "v_proj"]
    targets = [targets] if isinstance(targets, str) else list(targets)
    config = LoraConfig(
        r=rank,
        lora_alpha=float(pe_config.alpha if pe_config.alpha is not None else 2 * rank),
        lora_dropout=float(pe_config.dropout),
        target_modules=lora_target_regex(clip, pe_config, targets, pe_config.extra.get("encoders", "both")),
        bias="none",
    )
    inject_adapter_in_model(config, clip)
    # peft renames each wrapped layer's own weights to `<layer>.base_layer.*`; what it adds is named `lora_*`
    added = [name for name, _ in clip.named_parameters() if ".lora_" in name]
    if not added:
        raise ValueError(f"pe.method=lora matched no module of this CLIP (target_modules={targets})")
    return added


def weights_fingerprint(module):
    """The identity of the encoder weights (names, dtypes, shapes, bytes), short enough for a cache folder name."""
    return tensors_digest(module.state_dict(), hashlib.blake2b(digest_size=16))
