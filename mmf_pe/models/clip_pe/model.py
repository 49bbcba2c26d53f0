"""`clip_pe`: the CLIP member of the frozen-encoder family (`frozen_vl` with `encoder: clip`), kept under its own
name so existing configs (`model_config.clip_pe.clip_dir`, checkpoints with `clip.*` keys) work unchanged.

Everything but the names lives in mmf_pe.models.frozen_vl: heads, embedding cache, LoRA, checkpoints of trained
weights only. New configs may use `model=frozen_vl` with `encoder: clip` (projects/frozen_vl/hmd_clip_*.yaml).
"""
from mmf.common.registry import registry

from mmf_pe.models.frozen_vl.model import FrozenVL


@registry.register_model("clip_pe")
class CLIPPE(FrozenVL):
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
