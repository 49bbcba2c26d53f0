"""`clip_tokenizer`: MMF text processor with CLIP's own tokenizer from a local CLIP directory.

rc10's `bert_tokenizer` inserts [CLS]/[SEP], which CLIP's vocabulary does not have. Output keys follow MMF's
(`input_ids`, `input_mask`, `text`), so HatefulMemesImageDataset puts them into the sample unchanged.
"""
import os

from mmf.common.registry import registry

from mmf_pe.models.frozen_vl.processors import HFTokenizerProcessor

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
class CLIPTokenizerProcessor(HFTokenizerProcessor):
    """params: tokenizer_config.type (the CLIP directory, as for bert_tokenizer), max_seq_length (<= 77)."""

    name = "clip_tokenizer"
    default_max_length = CLIP_MAX_LENGTH

    def check_dir(self, path):
        return check_clip_dir(path, f"{self.name}: tokenizer_config.type")
