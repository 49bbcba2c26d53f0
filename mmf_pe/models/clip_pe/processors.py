"""`clip_tokenizer`: MMF text processor with CLIP's own tokenizer from a local CLIP directory.

rc10's `bert_tokenizer` inserts [CLS]/[SEP], which CLIP's vocabulary does not have. Output keys follow MMF's
(`input_ids`, `input_mask`, `text`), so HatefulMemesImageDataset puts them into the sample unchanged.
"""
import os

import torch
from mmf.common.registry import registry
from mmf.datasets.processors.processors import BaseProcessor

CLIP_MAX_LENGTH = 77  # CLIP's text position embeddings


def check_clip_dir(path, what):
    """A local CLIP directory or a clear error (nothing is ever downloaded)."""
    if path is None or not os.path.isdir(str(path)) or not os.path.isfile(os.path.join(str(path), "config.json")):
        raise FileNotFoundError(
            f"{what}: {path!r} is not a local CLIP directory (config.json, weights, tokenizer files). Put a "
            "transformers CLIP checkpoint there, e.g. openai/clip-vit-large-patch14 under "
            "$MMF_PE_WEIGHTS_DIR/clip-vit-large-patch14 (`CLIPModel.save_pretrained` + `CLIPProcessor.save_pretrained`)"
            ", or override the path. Nothing is downloaded."
        )
    return str(path)


@registry.register_processor("clip_tokenizer")
class CLIPTokenizerProcessor(BaseProcessor):
    """params: tokenizer_config.type (the CLIP directory, as for bert_tokenizer), max_seq_length (<= 77)."""

    def __init__(self, config, *args, **kwargs):
        from transformers import AutoTokenizer

        path = check_clip_dir(config.tokenizer_config.type, "clip_tokenizer: tokenizer_config.type")
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._max_seq_length = int(config.get("max_seq_length", CLIP_MAX_LENGTH))
        if not 2 <= self._max_seq_length <= CLIP_MAX_LENGTH:
            raise ValueError(f"clip_tokenizer: max_seq_length must be in [2, {CLIP_MAX_LENGTH}], "
                             f"got {self._max_seq_length}")

    def get_vocab_size(self):
        return len(self._tokenizer)

    def __call__(self, item):
        text = item["text"] if "text" in item else " ".join(item["tokens"])
        encoded = self._tokenizer(text, padding="max_length", truncation=True, max_length=self._max_seq_length)
        return {
            "input_ids": torch.tensor(encoded["input_ids"], dtype=torch.long),
            "input_mask": torch.tensor(encoded["attention_mask"], dtype=torch.long),
            "text": text,
        }
