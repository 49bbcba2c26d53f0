"""A frozen_vl run's image processor split at its Normalize: PIL image -> [0, 1] pixels (everything up to ToTensor)
and the per-channel normalisation after it as a differentiable tensor op.

White-box attacks and adversarial training perturb the pixels in [0, 1] (an L-infinity ball there means what it says
about the image) and differentiate through the normalisation the encoder sees.
"""
import copy

import torch

from mmf_pe.models.contract import ContractError


class PixelSpaceError(ContractError):
    pass


def _transform_type(entry):
    return entry if isinstance(entry, str) else (entry or {}).get("type")


def _transforms(image_processor, where):
    if (image_processor or {}).get("type") != "torchvision_transforms":
        raise PixelSpaceError(f"{where}: pixel attacks need a torchvision_transforms image processor (got "
                              f"{(image_processor or {}).get('type')!r})")
    transforms = ((image_processor.get("params") or {}).get("transforms")) or []
    return [transforms] if isinstance(transforms, dict) else list(transforms)


def normalisation(image_processor, where="image_processor"):
    """(mean, std) of the processor's final Normalize ((0, 0, 0), (1, 1, 1) without one): the [0, 1] -> model map."""
    transforms = _transforms(image_processor, where)
    types = [_transform_type(t) for t in transforms]
    if "ToTensor" not in types:
        raise PixelSpaceError(f"{where}: no ToTensor in its transforms; pixel attacks work on [0, 1] tensors")
    after = types[types.index("ToTensor") + 1:]
    if not after:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if after != ["Normalize"]:
        raise PixelSpaceError(f"{where}: after ToTensor only one Normalize may follow (got {after}); pixel attacks "
                              "need the [0, 1] pixels just before the normalisation")
    params = transforms[-1].get("params") or {}
    return tuple(float(v) for v in params["mean"]), tuple(float(v) for v in params["std"])


class PixelSpace:
    """`to_pixels(PIL RGB)` -> (3, H, W) in [0, 1]; `normalize` / `denormalize` between that and the model's input."""

    def __init__(self, image_processor, where="image_processor"):
        self.mean, self.std = normalisation(image_processor, where)
        self.config = copy.deepcopy(image_processor)
        transforms = _transforms(image_processor, where)
        cut = [_transform_type(t) for t in transforms].index("ToTensor") + 1
        self.config.setdefault("params", {})["transforms"] = transforms[:cut]
        self._processor = None

    def _view(self, x):
        shape = (-1, 1, 1)
        return (torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape),
                torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape))

    def normalize(self, pixels):
        mean, std = self._view(pixels)
        return (pixels - mean) / std

    def denormalize(self, inputs):
        mean, std = self._view(inputs)
        return inputs * std + mean

    def to_pixels(self, image):
        """(Callers have MMF set up: the model is built, mmf_pe.compat installed.)"""
        if self._processor is None:
            import mmf.datasets.processors.image_processors  # noqa: F401  (registers torchvision_transforms)
            from mmf.datasets.processors.processors import Processor
            from omegaconf import OmegaConf

            self._processor = Processor(OmegaConf.create(self.config))
        return self._processor(image)
