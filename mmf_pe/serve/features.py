"""The server's detector: region features of an uploaded meme, made the way `mmf_pe extract` made the training ones.

`provenance()` is built from the same settings `mmf_pe extract` writes to `extraction.json`, so an adapter's recorded
provenance and the server's compare key by key.
"""
import json
import threading
import time

import torch

from mmf_pe.tuners.provenance import provenance_differences, provenance_from_settings

IGNORED = ("lmdb", "normalisation")  # where the features were stored; per-adapter standardisation (applied here)


class Featurizer:
    def __init__(self, detector="torchvision_frcnn", weights=None, allow_random_weights=False, num_boxes=100,
                 min_boxes=None, selection="vmb", nms_thresh=0.5, conf_thresh=0.0, min_size=800, max_size=1333,
                 feature_dtype="float32", device="cpu", detector_options=None):
        import os

        from mmf_pe.extraction.detectors import build_detector
        from mmf_pe.extraction.selection import SelectionConfig

        self.select = SelectionConfig(method=selection, max_boxes=num_boxes,
                                      min_boxes=num_boxes if min_boxes is None else min_boxes,
                                      nms_thresh=nms_thresh, conf_thresh=conf_thresh)
        self.model = build_detector(detector, weights=weights, allow_random_weights=allow_random_weights,
                                    min_size=min_size, max_size=max_size, device=device, **(detector_options or {}))
        self.feature_dtype = feature_dtype
        settings = {**self.model.describe(), "weights": os.path.abspath(weights) if weights else None,
                    "selection": vars(self.select) | {"nms_thresholds": list(self.select.nms_thresholds)},
                    "feature_dtype": feature_dtype, "precision": "fp32"}
        self._provenance = json.loads(json.dumps(provenance_from_settings(settings)))
        self.lock = threading.Lock()

    def provenance(self):
        return self._provenance

    def differences(self, adapter_provenance):
        adapter = {k: v for k, v in adapter_provenance.items() if k not in IGNORED}
        return provenance_differences(adapter, self._provenance)

    def working_size(self):
        """(min_size, max_size): the detector resizes every image to short side min_size, long side <= max_size;
        uploads are shrunk towards it before decoding to arrays (mmf_pe.serve.images)."""
        preprocess = self.model.preprocess
        return preprocess.min_size, preprocess.max_size

    def __call__(self, rgb, normalisation=None, original_size=None, deadline=None):
        """(features (N, D) float32 tensor, boxes [[x1, y1, x2, y2]] in image pixels) of one RGB array.

        `original_size` (height, width): the upload's size when `rgb` is a reduced copy (boxes come back in the
        upload's pixels); `deadline` (time.monotonic): TimeoutError instead of running once it has passed."""
        with self.lock, torch.inference_mode():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("the request's deadline passed while waiting for the detector")
            size = tuple(original_size) if original_size else rgb.shape[:2]
            record = self.model.extract([self.model.preprocess(rgb)], [size], self.select)[0]
        features = torch.from_numpy(record["features"])
        if self.feature_dtype == "float16":  # stored as fp16 in training, read back as fp32 by MMF
            features = features.half().float()
        if normalisation:
            mean = torch.tensor(normalisation["mean"], dtype=torch.float64)
            std = torch.tensor(normalisation["std"], dtype=torch.float64)
            features = ((features.double() - mean) / std).float()
        return features, record["bbox"].round(1).tolist()
