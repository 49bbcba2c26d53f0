"""`clip_pe`: frozen-CLIP meme classifier with concat / cross fusion heads (registered MMF model; the CLIP member of
the `frozen_vl` family), its `clip_tokenizer` text processor, LoRA or IA3 through the PE core, and an embedding
cache."""
# MMF first: its setup_imports() imports mmf_pe.register, which imports both packages back; this
# way each class is defined before the other package asks for it, whichever is imported first.
import mmf.common.registry  # noqa: F401,I001
from mmf_pe.models.clip_pe.model import CLIPPE
from mmf_pe.models.clip_pe.processors import CLIPTokenizerProcessor

__all__ = ["CLIPPE", "CLIPTokenizerProcessor"]
