"""`clip_pe`: the first name of `frozen_vl` with the CLIP encoder; an alias kept by mmf_pe/models/legacy.py (with the
version that removes it), which also answers for the old modules `clip_pe.model`, `clip_pe.processors` and
`clip_pe.cache`."""
# MMF first: its setup_imports() imports mmf_pe.register, which imports both packages back; this
# way each class is defined before the other package asks for it, whichever is imported first.
import mmf.common.registry  # noqa: F401,I001
from mmf_pe.models.legacy import CLIPPE, CLIPTokenizerProcessor, install_module_aliases

install_module_aliases()

__all__ = ["CLIPPE", "CLIPTokenizerProcessor"]
