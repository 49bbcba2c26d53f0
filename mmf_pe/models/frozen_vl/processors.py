"""`hf_tokenizer`: MMF text processor with the encoder's own tokenizer from its local directory (BLIP's BERT
WordPiece, BLIP-2's OPT / T5 tokenizers, CLIP's BPE). Output keys follow MMF's (`input_ids`, `input_mask`, `text`).
`clip_tokenizer`: the same for a CLIP directory, at most CLIP's 77 positions.

rc10's `bert_tokenizer` would load `bert-base-uncased` by name (a download) and insert [CLS]/[SEP] by hand; this
one reads the directory the model comes from, so the ids always match the encoder's vocabulary.
"""
import torch
from mmf.common.registry import registry
from mmf.datasets.processors.processors import BaseProcessor

from mmf_pe.models.frozen_vl.encoders.base import check_encoder_dir
from mmf_pe.utils.text_normalization import NONE, check_mode, normalize_text

UNBOUNDED = 10 ** 6  # tokenizers without a known limit report a huge model_max_length


@registry.register_processor("hf_tokenizer")
class HFTokenizerProcessor(BaseProcessor):
    """params: tokenizer_config.type (the encoder directory), max_seq_length (padded / truncated to it),
    text_normalization (`none` when absent; see mmf_pe.utils.text_normalization)."""

    name = "hf_tokenizer"
    default_max_length = 64

    def check_dir(self, path):
        return check_encoder_dir(path, f"{self.name}: tokenizer_config.type", "Hugging Face", "the encoder's directory")

    def __init__(self, config, *args, **kwargs):
        from transformers import AutoTokenizer

        path = self.check_dir(config.tokenizer_config.type)
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        if self._tokenizer.pad_token is None:
            raise ValueError(f"{self.name}: the tokenizer in {path} has no pad token; set one in its "
                             "tokenizer_config.json (pad_token)")
        self._max_seq_length = int(config.get("max_seq_length", self.default_max_length))
        self.text_normalization = check_mode(config.get("text_normalization", NONE), f"{self.name}: text_normalization")
        limit = self._tokenizer.model_max_length
        if not 2 <= self._max_seq_length <= (limit if limit < UNBOUNDED else UNBOUNDED):
            raise ValueError(f"{self.name}: max_seq_length must be in [2, {limit}] for {path}, "
                             f"got {self._max_seq_length}")

    def get_vocab_size(self):
        return len(self._tokenizer)

    def __call__(self, item):
        text = item["text"] if "text" in item else " ".join(item["tokens"])
        text = normalize_text(text, self.text_normalization)
        encoded = self._tokenizer(text, padding="max_length", truncation=True, max_length=self._max_seq_length)
        return {
            "input_ids": torch.tensor(encoded["input_ids"], dtype=torch.long),
            "input_mask": torch.tensor(encoded["attention_mask"], dtype=torch.long),
            "text": text,
        }


CLIP_MAX_LENGTH = 77  # CLIP's text position embeddings
CLIP_EXAMPLE = "openai/clip-vit-large-patch14 under $MMF_PE_WEIGHTS_DIR/clip-vit-large-patch14"


@registry.register_processor("clip_tokenizer")
class CLIPTokenizerProcessor(HFTokenizerProcessor):
    """params: tokenizer_config.type (the CLIP directory, as for bert_tokenizer), max_seq_length (<= 77).

    rc10's `bert_tokenizer` inserts [CLS]/[SEP], which CLIP's vocabulary does not have."""

    name = "clip_tokenizer"
    default_max_length = CLIP_MAX_LENGTH

    def check_dir(self, path):
        return check_encoder_dir(path, f"{self.name}: tokenizer_config.type", "CLIP", CLIP_EXAMPLE)
