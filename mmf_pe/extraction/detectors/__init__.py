"""Detector registry: name -> builder (imported lazily; both need only torch and torchvision)."""
import importlib

DETECTORS = {
    "torchvision_frcnn": ("mmf_pe.extraction.detectors.torchvision_frcnn", "TorchvisionFRCNN"),
    "vg_frcnn": ("mmf_pe.extraction.detectors.vg_frcnn", "VGFasterRCNN"),
}


def build_detector(name, **kwargs):
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}")
    module, cls = DETECTORS[name]
    return getattr(importlib.import_module(module), cls)(**kwargs)
