"""The encoders of the frozen-encoder family, chosen by `model_config.<model>.encoder`."""
from mmf_pe.models.frozen_vl.encoders.base import DTYPES, FrozenEncoder, Stream, module_bytes, torch_dtype
from mmf_pe.models.frozen_vl.encoders.blip import BLIPEncoder, BLIPITMEncoder
from mmf_pe.models.frozen_vl.encoders.blip2 import BLIP2Encoder
from mmf_pe.models.frozen_vl.encoders.clip import CLIPEncoder

ENCODERS = {cls.name: cls for cls in (CLIPEncoder, BLIPEncoder, BLIPITMEncoder, BLIP2Encoder)}


def get_encoder(name, config):
    if name not in ENCODERS:
        raise ValueError(f"model_config.*.encoder must be one of {sorted(ENCODERS)}, got {name!r}")
    return ENCODERS[name](config)


__all__ = ["DTYPES", "ENCODERS", "FrozenEncoder", "Stream", "get_encoder", "module_bytes", "torch_dtype"]
