"""Which regions to keep: MMF's VMB recipe (default) and the LXMERT-demo recipe of the VG checkpoint.

Both take per-proposal class probabilities `scores` (R x C, background column at `background`), boxes and return the
indices of the kept proposals in rank order plus each kept region's object class as an index among the foreground
classes (VMB's `objects`: the background column removed, so for VG it is the 0..1599 vocabulary index).
"""
from dataclasses import dataclass

import torch
from torchvision.ops import batched_nms, nms


@dataclass
class SelectionConfig:
    """`vmb`: per-class NMS over proposals, rank by best surviving class score, keep [min_boxes, max_boxes] above
    `conf_thresh` (MMF's extract_features_vmb.py). `vg_demo`: arg-max class per proposal, one class-agnostic NMS at
    the first IoU of `nms_thresholds` that leaves >= min_boxes, keep max_boxes (unc-nlp/frcnn-vg-finetuned demo)."""

    method: str = "vmb"
    max_boxes: int = 100
    min_boxes: int = 100
    nms_thresh: float = 0.5
    conf_thresh: float = 0.0
    nms_thresholds: tuple = (0.5, 0.6, 0.7)

    def __post_init__(self):
        if self.method not in ("vmb", "vg_demo"):
            raise ValueError(f"unknown box selection {self.method!r}: use 'vmb' or 'vg_demo'")
        if not 1 <= self.min_boxes <= self.max_boxes:
            raise ValueError(f"need 1 <= min_boxes ({self.min_boxes}) <= max_boxes ({self.max_boxes})")


def foreground(scores, background):
    """Scores without the background column, and a map from those columns back to the original class indices."""
    classes = torch.arange(scores.shape[1], device=scores.device)
    keep = classes != (background % scores.shape[1])
    return scores[:, keep], classes[keep]


def select_vmb(boxes, scores, background, config):
    """MMF's VMB recipe. boxes: (R, 4) proposals; scores: (R, C) softmax probabilities."""
    fg, _ = foreground(scores, background)
    num_props, num_fg = fg.shape
    if num_props == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    # per-class NMS in one call: every (proposal, class) pair is a candidate, grouped by class
    flat_boxes = boxes[:, None, :].expand(num_props, num_fg, 4).reshape(-1, 4)
    flat_scores = fg.reshape(-1)
    groups = torch.arange(num_fg, device=fg.device).repeat(num_props)
    kept = batched_nms(flat_boxes.float(), flat_scores.float(), groups, config.nms_thresh)
    max_conf = torch.zeros(num_props, dtype=fg.dtype, device=fg.device)
    max_conf.scatter_reduce_(0, kept // num_fg, flat_scores[kept], reduce="amax")
    order = torch.sort(max_conf, descending=True, stable=True).indices
    above = int((max_conf >= config.conf_thresh).sum())
    count = min(max(above, config.min_boxes), config.max_boxes, num_props)
    keep = order[:count]
    return keep, fg[keep].argmax(dim=1)


def select_vg_demo(boxes_per_class, scores, background, config):
    """The VG demo's recipe. boxes_per_class: (R, C_fg, 4) regressed boxes; returns kept indices and classes."""
    fg, _ = foreground(scores, background)
    if fg.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    best_score, best_class = fg.max(dim=1)
    boxes = boxes_per_class[torch.arange(fg.shape[0]), best_class]
    keep = None
    for threshold in config.nms_thresholds:
        keep = nms(boxes.float(), best_score.float(), threshold)
        if len(keep) >= config.min_boxes:
            break
    keep = keep[: config.max_boxes]
    return keep, best_class[keep]
