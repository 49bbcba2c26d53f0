"""`blip` (BlipModel: projected image and text features, the source's captioning-checkpoint rows) and `blip_itm`
(BlipForImageTextRetrieval: the image-grounded text encoder's fused [CLS] state, the source's ITM rows)."""
import torch

from mmf_pe.models.frozen_vl.encoders.base import FrozenEncoder, Stream, check_image_size

EMBEDDINGS = ("projected", "pooled")
VISION_TARGETS = ("self_attn.qkv",)
TEXT_TARGETS = ("attention.self.query", "attention.self.value")  # BERT-style; crossattention.* is not matched


class BLIPEncoder(FrozenEncoder):
    name = "blip"
    label = "BLIP"
    example = "Salesforce/blip-image-captioning-large under $MMF_PE_WEIGHTS_DIR/blip-image-captioning-large"
    model_types = ("blip",)
    pe_defaults = {"lora": {"target_modules": list(VISION_TARGETS + TEXT_TARGETS)}}

    def hf_class(self):
        from transformers import BlipModel

        return BlipModel

    @property
    def embedding(self):
        embedding = str(self.config.get("embedding", None) or "projected")
        if embedding not in EMBEDDINGS:
            raise ValueError(f"model_config.*.embedding must be one of {EMBEDDINGS} for BLIP, got {embedding!r}")
        return embedding

    def settings(self):
        return {"encoder": self.name, "embedding": self.embedding}

    def streams(self, model):
        if self.embedding == "projected":  # get_image_features / get_text_features, as the source
            widths = model.config.projection_dim, model.config.projection_dim
        else:
            widths = model.config.vision_config.hidden_size, model.config.text_config.hidden_size
        return [Stream("image", "image", widths[0]), Stream("text", "text", widths[1])]

    def encode(self, model, names, pixels, input_ids, mask):
        out = {}
        if "image" in names:
            check_image_size(pixels, self.image_size(model), "blip")
            pooled = model.vision_model(pixel_values=pixels.to(model.dtype)).pooler_output
            out["image"] = model.visual_projection(pooled) if self.embedding == "projected" else pooled
        if "text" in names:
            pooled = model.text_model(input_ids=input_ids, attention_mask=mask).pooler_output
            out["text"] = model.text_projection(pooled) if self.embedding == "projected" else pooled
        return out

    def towers(self, model):
        return {"vision": "vision_model.encoder.layers", "text": "text_model.encoder.layer"}


class BLIPITMEncoder(BLIPEncoder):
    name = "blip_itm"
    example = "Salesforce/blip-itm-large-coco under $MMF_PE_WEIGHTS_DIR/blip-itm-large-coco"

    def hf_class(self):
        from transformers import BlipForImageTextRetrieval

        return BlipForImageTextRetrieval

    def settings(self):
        return {"encoder": self.name, "embedding": "itm_cls"}

    def streams(self, model):
        return [Stream("fused", "pair", model.config.text_config.hidden_size)]

    def encode(self, model, names, pixels, input_ids, mask):
        check_image_size(pixels, self.image_size(model), "blip_itm")
        image_embeds = model.vision_model(pixel_values=pixels.to(model.dtype)).last_hidden_state
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        fused = model.text_encoder(input_ids=input_ids, attention_mask=mask, encoder_hidden_states=image_embeds,
                                   encoder_attention_mask=image_mask).last_hidden_state
        return {"fused": fused[:, 0]}  # the ITM head's input: [CLS] after attending to the image

    def towers(self, model):
        return {"vision": "vision_model.encoder.layers", "text": "text_encoder.encoder.layer"}
