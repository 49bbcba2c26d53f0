"""`clip`: CLIPModel's image and text towers, pooled (Hate-CLIPper's choice) or projected into CLIP's joint space."""
from mmf_pe.models.frozen_vl.encoders.base import FrozenEncoder, Stream, check_image_size

EMBEDDINGS = ("pooled", "projected")


class CLIPEncoder(FrozenEncoder):
    name = "clip"
    label = "CLIP"
    example = "openai/clip-vit-large-patch14 under $MMF_PE_WEIGHTS_DIR/clip-vit-large-patch14"
    model_types = ("clip",)
    pe_defaults = {
        "lora": {"target_modules": ["self_attn.q_proj", "self_attn.v_proj"]},
        # IA3's recipe (keys, values, the FFN's input of its second linear), in CLIP's names
        "ia3": {"target_modules": ["self_attn.k_proj", "self_attn.v_proj", "mlp.fc2"],
                "feedforward_modules": ["mlp.fc2"]},
    }

    def hf_class(self):
        from transformers import CLIPModel

        return CLIPModel

    @property
    def embedding(self):
        embedding = str(self.config.get("embedding", None) or "pooled")
        if embedding not in EMBEDDINGS:
            raise ValueError(f"model_config.*.embedding must be one of {EMBEDDINGS} for CLIP, got {embedding!r}")
        return embedding

    def streams(self, model):
        if self.embedding == "pooled":
            widths = model.config.vision_config.hidden_size, model.config.text_config.hidden_size
        else:
            widths = model.config.projection_dim, model.config.projection_dim
        return [Stream("image", "image", widths[0]), Stream("text", "text", widths[1])]

    def settings(self):
        return self.embedding  # a plain string: clip_pe caches made before the family keep their fingerprint

    def encode(self, model, names, pixels, input_ids, mask):
        out = {}
        if "image" in names:
            check_image_size(pixels, self.image_size(model), "clip")
            pooled = model.vision_model(pixel_values=pixels.to(model.dtype)).pooler_output
            out["image"] = pooled if self.embedding == "pooled" else model.visual_projection(pooled)
        if "text" in names:
            pooled = model.text_model(input_ids=input_ids, attention_mask=mask).pooler_output
            out["text"] = pooled if self.embedding == "pooled" else model.text_projection(pooled)
        return out

    def towers(self, model):
        return {"vision": "vision_model.encoder.layers", "text": "text_model.encoder.layers"}
