"""`frozen_vl`: the frozen-encoder family of meme classifiers (CLIP, BLIP, BLIP-ITM, BLIP-2 chosen by config) with
concat / cross fusion heads, an embedding cache, LoRA or IA3 through the PE core, and the `hf_tokenizer` /
`clip_tokenizer` text processors. Importing registers the model and the processors."""
# MMF first: its setup_imports() imports mmf_pe.register, which imports both packages back; this
# way each class is defined before the other package asks for it, whichever is imported first.
import mmf.common.registry  # noqa: F401,I001
from mmf_pe.models.frozen_vl.encoders import ENCODERS
from mmf_pe.models.frozen_vl.model import FrozenVL
from mmf_pe.models.frozen_vl.processors import CLIPTokenizerProcessor, HFTokenizerProcessor

__all__ = ["CLIPTokenizerProcessor", "ENCODERS", "FrozenVL", "HFTokenizerProcessor"]
