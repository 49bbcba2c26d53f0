"""`blip2`: Blip2Model's three streams, as the source feeds its head: the vision model's pooled output, the
Q-Former's pooled output, and text features from the language model (OPT or Flan-T5).

Text features (`model_config.*.blip2.text_features`):
- `hidden` (default): the language model's hidden states at `text_layer` (index into its hidden-state tuple: 0 =
  embeddings, -1 = last; the Flan-T5 "layer5" row is 5), mean-pooled over the tokens. T5: its encoder's states.
- `logits`: the source's choice, vocabulary logits. OPT: `logits[:, :, 0]` (token 0's logit at every position, one
  value per position; padded/truncated to `logits_length`); Flan-T5: the decoder's first-step logits (vocabulary
  wide), the decoder started from the pad token as the source did.
"""
import torch

from mmf_pe.models.frozen_vl.encoders.base import FrozenEncoder, Stream, check_image_size, masked_mean

TEXT_FEATURES = ("hidden", "logits")


class BLIP2Encoder(FrozenEncoder):
    name = "blip2"
    label = "BLIP-2"
    example = "Salesforce/blip2-opt-2.7b under $MMF_PE_WEIGHTS_DIR/blip2-opt-2.7b"
    model_types = ("blip-2",)
    # vision: fused qkv; Q-Former: BERT-style self-attention; OPT: q/v projections; T5 blocks: layer.0.SelfAttention.q/v
    pe_defaults = {"lora": {"target_modules": [
        "self_attn.qkv", "attention.attention.query", "attention.attention.value", "self_attn.q_proj",
        "self_attn.v_proj", "layer.0.SelfAttention.q", "layer.0.SelfAttention.v"]}}

    def hf_class(self):
        from transformers import Blip2Model

        return Blip2Model

    @property
    def options(self):
        options = self.config.get("blip2", None) or {}
        text_features = str(options.get("text_features", "hidden"))
        if text_features not in TEXT_FEATURES:
            raise ValueError(f"model_config.*.blip2.text_features must be one of {TEXT_FEATURES}, "
                             f"got {text_features!r}")
        return {"text_features": text_features, "text_layer": int(options.get("text_layer", -1)),
                "logits_length": int(options.get("logits_length", 32))}

    def settings(self):
        options = self.options
        if options["text_features"] == "hidden":
            options.pop("logits_length")
        else:
            options.pop("text_layer")
        return {"encoder": self.name, **options}

    @staticmethod
    def decoder_only(model):
        return bool(model.config.use_decoder_only_language_model)

    def text_stack(self, model):
        """The module whose hidden states `hidden` pools: OPT's decoder stack, T5's encoder."""
        lm = model.language_model
        return lm.get_decoder() if self.decoder_only(model) else lm.get_encoder()

    def text_width(self, model):
        options, text_config = self.options, model.config.text_config
        if options["text_features"] == "hidden":
            depth = len(self.layers_of(model, self.towers(model)["text"]))
            if not -(depth + 1) <= options["text_layer"] <= depth:
                raise ValueError(f"model_config.*.blip2.text_layer={options['text_layer']} is out of range: this "
                                 f"language model has {depth} layers (hidden states 0..{depth}, or negative)")
            return getattr(text_config, "d_model", None) or text_config.hidden_size
        return options["logits_length"] if self.decoder_only(model) else text_config.vocab_size

    @staticmethod
    def layers_of(model, path):
        return model.get_submodule(path)

    def streams(self, model):
        return [Stream("image", "image", model.config.vision_config.hidden_size),
                Stream("qformer", "image", model.config.qformer_config.hidden_size),
                Stream("text", "text", self.text_width(model))]

    def encode(self, model, names, pixels, input_ids, mask):
        out = {}
        if "image" in names or "qformer" in names:
            check_image_size(pixels, self.image_size(model), "blip2")
            vision = model.vision_model(pixel_values=pixels.to(model.vision_model.dtype))
            out["image"] = vision.pooler_output
            if "qformer" in names:
                image_embeds = vision.last_hidden_state.to(model.query_tokens.dtype)  # Q-Former stays fp32
                image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
                queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
                out["qformer"] = model.qformer(query_embeds=queries, encoder_hidden_states=image_embeds,
                                               encoder_attention_mask=image_mask).pooler_output
        if "text" in names:
            out["text"] = self.text_features(model, input_ids, mask)
        return {name: out[name] for name in names}

    def text_features(self, model, input_ids, mask):
        options = self.options
        if options["text_features"] == "hidden":
            states = self.text_stack(model)(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
            return masked_mean(states.hidden_states[options["text_layer"]], mask)
        lm = model.language_model
        if self.decoder_only(model):
            logits = lm(input_ids=input_ids, attention_mask=mask).logits[:, :, 0]
            length = options["logits_length"]
            logits = logits[:, :length]
            return torch.nn.functional.pad(logits, (0, length - logits.shape[1]))
        start = torch.full((input_ids.shape[0], 1), model.config.text_config.pad_token_id, dtype=torch.long,
                           device=input_ids.device)
        return lm(input_ids=input_ids, attention_mask=mask, decoder_input_ids=start).logits[:, 0]

    def towers(self, model):
        towers = {"vision": "vision_model.encoder.layers", "qformer": "qformer.encoder.layer"}
        if self.decoder_only(model):
            decoder = self.text_stack(model)
            towers["text"] = next(f"language_model.{name}" for name, module in model.language_model.named_modules()
                                  if module is decoder) + ".layers"
        else:
            towers["text"] = "language_model.encoder.block"
            if self.options["text_features"] == "logits":  # only the logits run T5's decoder
                towers["text_decoder"] = "language_model.decoder.block"
        return towers
