"""Old names of the model tier, in one place, with the version that removes them (the PE core's old names and the
converter of old config / export formats: mmf_pe/tuners/legacy.py).

- model `clip_pe` (`CLIPPE`): the CLIP member of `frozen_vl` under its first name, so configs with
  `model_config.clip_pe.clip_dir` and checkpoints with `clip.*` keys work unchanged; new configs use
  `model=frozen_vl` with `encoder: clip` (projects/frozen_vl/hmd_clip_*.yaml).
- modules `mmf_pe.models.clip_pe.{model, processors, cache}`: now this module, `frozen_vl.processors` (the
  `clip_tokenizer` processor) and `frozen_vl.cache`; `check_clip_dir` is `check_encoder_dir(..., "CLIP", ...)`.
"""
import sys
import warnings

from mmf.common.registry import registry

from mmf_pe.models.frozen_vl import cache as frozen_vl_cache
from mmf_pe.models.frozen_vl.encoders.base import check_encoder_dir
from mmf_pe.models.frozen_vl.model import FrozenVL
from mmf_pe.models.frozen_vl.processors import CLIP_EXAMPLE, CLIP_MAX_LENGTH, CLIPTokenizerProcessor

REMOVED_IN = "0.3.0"  # the version that drops every alias below (docs/clip-pe.md)
OLD_PACKAGE = "mmf_pe.models.clip_pe"
# old module name -> the module that now holds its names
MOVED_MODULES = {f"{OLD_PACKAGE}.model": __name__, f"{OLD_PACKAGE}.processors": __name__,
                 f"{OLD_PACKAGE}.cache": frozen_vl_cache.__name__}

__all__ = ["CLIPPE", "CLIPTokenizerProcessor", "CLIP_MAX_LENGTH", "check_clip_dir"]


@registry.register_model("clip_pe")
class CLIPPE(FrozenVL):
    """`clip_pe`: `frozen_vl` with the CLIP encoder, its own config node (`clip_dir`) and checkpoint prefix (`clip`)."""

    MODEL_NAME = "clip_pe"
    ENCODER_ATTR = "clip"
    DIR_KEY = "clip_dir"

    def encoder_name(self):
        chosen = self.config.get("encoder", None)
        if chosen not in (None, "clip"):
            raise ValueError(f"model=clip_pe is the CLIP encoder only (got encoder={chosen!r}); for BLIP / BLIP-2 use "
                             f"model=frozen_vl with model_config.frozen_vl.encoder={chosen} (projects/frozen_vl/)")
        return "clip"

    def _prefix(self):
        return self.MODEL_NAME


def check_clip_dir(path, what):
    """A local CLIP directory or a clear error (nothing is ever downloaded); the old name of the encoder check."""
    warnings.warn(f"check_clip_dir is an old name (removed in mmf-pe {REMOVED_IN}); use "
                  "mmf_pe.models.frozen_vl.encoders.base.check_encoder_dir", FutureWarning, stacklevel=2)
    return check_encoder_dir(path, what, "CLIP", CLIP_EXAMPLE)


def install_module_aliases():
    """`import mmf_pe.models.clip_pe.<old module>` finds the module that holds its names now."""
    for old, new in MOVED_MODULES.items():
        sys.modules.setdefault(old, sys.modules[new])
