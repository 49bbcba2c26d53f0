"""What every detector shares: resizing, checkpoint loading with strict, readable checks, and result assembly."""
import os

import numpy as np
import torch
import torch.nn.functional as F

from mmf_pe.extraction.selection import select_vg_demo, select_vmb


class Detector:
    """A region-feature extractor. Subclasses set `model` (an nn.Module), `preprocess` (a callable:
    RGB uint8 array -> CHW float tensor), `feature_dim`, `background` (the background
    column of the class scores) and implement `forward(batch, sizes) -> [(proposals, scores, class_boxes, feature_fn)]`
    per image, in resized-image coordinates: proposals (R, 4), scores (R, C) probabilities, class_boxes (R, C_fg, 4)
    regressed boxes or None, feature_fn(keep, boxes) -> (len(boxes), D) features of the kept proposals (`keep` is
    None when `boxes` are not proposals)."""

    name = "detector"
    size_divisibility = 0
    feature_dim = 2048
    background = 0
    channels_last = False

    def to(self, device):
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def describe(self):
        return {"detector": self.name, "feature_dim": self.feature_dim}

    @torch.inference_mode()
    def extract(self, images, original_sizes, selection):
        """images: list of preprocessed CHW tensors; original_sizes: [(h, w)]. Returns one record dict per image."""
        batch, sizes = pad_batch(images, self.size_divisibility, self.device)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        records = []
        for (proposals, scores, class_boxes, feature_fn), size, (height, width) in zip(
            self.forward(batch, sizes), sizes, original_sizes
        ):
            scale = torch.tensor([width / size[1], height / size[0]] * 2, device=proposals.device)
            fallback = len(proposals) == 0
            if fallback:  # no proposal survived: describe the whole image by one region rather than nothing
                proposals = torch.tensor([[0.0, 0.0, size[1], size[0]]], device=proposals.device)
                scores = torch.full((1, scores.shape[1]), 1.0 / scores.shape[1], device=proposals.device)
                class_boxes = None
            if selection.method == "vg_demo" and class_boxes is not None:
                keep, objects = select_vg_demo(class_boxes * scale, scores, self.background, selection)
                boxes = class_boxes[keep, objects]
            else:
                keep, objects = select_vmb(proposals * scale, scores, self.background, selection)
                boxes = proposals[keep]
            features = feature_fn(None if fallback else keep, proposals[keep])
            records.append({
                "features": features.float().cpu().numpy(),
                "bbox": (boxes * scale).float().cpu().numpy(),
                "num_boxes": int(len(keep)),
                "objects": objects.cpu().numpy().astype(np.int64),
                "cls_prob": scores[keep].float().cpu().numpy(),
                "image_width": int(width),
                "image_height": int(height),
                "_fallback_box": fallback,
            })
        return records


def pad_batch(images, divisibility, device):
    """Zero-pad CHW tensors bottom/right to a common size (rounded up to `divisibility`)."""
    sizes = [tuple(image.shape[-2:]) for image in images]
    height, width = max(s[0] for s in sizes), max(s[1] for s in sizes)
    if divisibility:
        height = -(-height // divisibility) * divisibility
        width = -(-width // divisibility) * divisibility
    if len(images) == 1 and (height, width) == sizes[0]:
        return images[0].unsqueeze(0).to(device), sizes
    batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    for i, image in enumerate(images):
        batch[i, :, : image.shape[1], : image.shape[2]] = image
    return batch.to(device), sizes


def resize_bilinear(image, size):
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]


def shortest_edge_size(height, width, min_size, max_size):
    """(new_h, new_w): short side `min_size`, long side capped at `max_size`, rounded as detectron2 does."""
    scale = min_size / min(height, width)
    new_h, new_w = height * scale, width * scale
    if max(new_h, new_w) > max_size:
        rescale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * rescale, new_w * rescale
    return int(new_h + 0.5), int(new_w + 0.5)


def load_checkpoint(path):
    """A state dict from a .pth/.bin/.pkl file (unwrapping {'model': ...} / {'state_dict': ...})."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"detector weights {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"cannot read detector weights {path}: {type(e).__name__}: {e}") from None
    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def check_state_dict(model, state, source, hint=""):
    """Strict key and shape check with a readable error (which keys are missing, unexpected or mis-shaped)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = [f"{source} does not match the {type(model).__name__} layout ({len(state)} tensors in the file, "
                 f"{len(expected)} expected)"]
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                parts.append(f"  {label} ({len(items)}): " + ", ".join(items[:8]) + (" ..." if len(items) > 8 else ""))
        if hint:
            parts.append(hint)
        raise ValueError("\n".join(parts))


def seeded_init(build, seed):
    """Build a module with deterministic random weights without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
