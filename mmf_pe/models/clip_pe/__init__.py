"""`clip_pe`: frozen-CLIP meme classifier with concat / cross fusion heads (registered MMF model), its
`clip_tokenizer` text processor, LoRA through peft, and an embedding cache. Importing registers both."""
from mmf_pe.models.clip_pe.model import CLIPPE
from mmf_pe.models.clip_pe.processors import CLIPTokenizerProcessor

__all__ = ["CLIPPE", "CLIPTokenizerProcessor"]
