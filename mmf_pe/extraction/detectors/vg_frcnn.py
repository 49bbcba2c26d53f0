"""The Visual Genome ResNet-101 C4 Faster R-CNN (bottom-up-attention style) of `unc-nlp/frcnn-vg-finetuned`.

Written from the public facts in shared/reference/vg-frcnn-checkpoint.md: Caffe max-pool stem, res2-res4 backbone
(stride in the 1x1 conv, BatchNorm2d), RPN on res4 (512 hidden channels, 12 anchors), RoIPool 14x14 at 1/16, res5
head at stride 16 with dilation 2, mean-pooled 2048-d features, 1600+1 object classes (background last), class-
specific box regression, 400+1 attributes. Module names reproduce the checkpoint's state-dict keys so that it loads
strictly. `width` < 64 builds the same layout with narrower layers (tests).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import clip_boxes_to_image, nms, roi_pool

from mmf_pe.extraction.detectors.base import (
    Detector,
    check_state_dict,
    load_checkpoint,
    resize_bilinear,
    seeded_init,
    shortest_edge_size,
)

PIXEL_MEAN_BGR = (102.9801, 115.9465, 122.7717)
ANCHOR_SIZES = (64, 128, 256, 512)
ASPECT_RATIOS = (0.5, 1.0, 2.0)
STRIDE = 16
SCALE_CLAMP = math.log(1000.0 / 16)


class ConvNorm(nn.Conv2d):
    """A bias-free conv with its BatchNorm as child `.norm` (the checkpoint's `<conv>.norm.*` keys)."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0, dilation=1):
        super().__init__(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, bias=False)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.norm(super().forward(x))


class Bottleneck(nn.Module):
    def __init__(self, cin, bottleneck, cout, stride=1, dilation=1):
        super().__init__()
        self.shortcut = ConvNorm(cin, cout, 1, stride=stride) if cin != cout else None
        self.conv1 = ConvNorm(cin, bottleneck, 1, stride=stride)  # stride_in_1x1
        self.conv2 = ConvNorm(bottleneck, bottleneck, 3, padding=dilation, dilation=dilation)
        self.conv3 = ConvNorm(bottleneck, cout, 1)

    def forward(self, x):
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        return F.relu_(out + (self.shortcut(x) if self.shortcut is not None else x))


def stage(blocks, cin, bottleneck, cout, stride, dilation=1):
    return nn.Sequential(*[
        Bottleneck(cin if i == 0 else cout, bottleneck, cout, stride if i == 0 else 1, dilation) for i in range(blocks)
    ])


class Stem(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv1 = ConvNorm(3, width, 7, stride=2, padding=3)

    def forward(self, x):
        return F.max_pool2d(F.relu_(self.conv1(x)), kernel_size=3, stride=2, padding=0, ceil_mode=True)


class Backbone(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.stem = Stem(width)
        self.res2 = stage(3, width, width, 4 * width, 1)
        self.res3 = stage(4, 4 * width, 2 * width, 8 * width, 2)
        self.res4 = stage(23, 8 * width, 4 * width, 16 * width, 2)

    def forward(self, x):
        return self.res4(self.res3(self.res2(self.stem(x))))


def cell_anchors():
    """12 anchors centred at 0, size-major: (-w/2, -h/2, w/2, h/2) with w = sqrt(size^2 / ratio), h = ratio * w."""
    anchors = []
    for size in ANCHOR_SIZES:
        for ratio in ASPECT_RATIOS:
            w = math.sqrt(size * size / ratio)
            h = ratio * w
            anchors.append([-w / 2, -h / 2, w / 2, h / 2])
    return torch.tensor(anchors)


class AnchorGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell_anchors = nn.ParameterList([nn.Parameter(cell_anchors(), requires_grad=False)])

    def forward(self, height, width):
        device = self.cell_anchors[0].device
        ys = torch.arange(0, height * STRIDE, STRIDE, dtype=torch.float32, device=device)
        xs = torch.arange(0, width * STRIDE, STRIDE, dtype=torch.float32, device=device)
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        shifts = torch.stack([x.reshape(-1), y.reshape(-1)] * 2, dim=1)
        return (shifts[:, None, :] + self.cell_anchors[0][None]).reshape(-1, 4)


class RPNHead(nn.Module):
    def __init__(self, cin, hidden, anchors):
        super().__init__()
        self.conv = nn.Conv2d(cin, hidden, 3, padding=1)
        self.objectness_logits = nn.Conv2d(hidden, anchors, 1)
        self.anchor_deltas = nn.Conv2d(hidden, anchors * 4, 1)

    def forward(self, x):
        x = F.relu(self.conv(x))
        return self.objectness_logits(x), self.anchor_deltas(x)


class RPN(nn.Module):
    def __init__(self, cin, hidden=512, pre_nms_topk=6000, post_nms_topk=300, nms_thresh=0.7):
        super().__init__()
        self.anchor_generator = AnchorGenerator()
        self.rpn_head = RPNHead(cin, hidden, len(ANCHOR_SIZES) * len(ASPECT_RATIOS))
        self.pre_nms_topk, self.post_nms_topk, self.nms_thresh = pre_nms_topk, post_nms_topk, nms_thresh

    def forward(self, features, sizes):
        logits, deltas = self.rpn_head(features)
        n, a, h, w = logits.shape
        logits = logits.permute(0, 2, 3, 1).reshape(n, -1)
        deltas = deltas.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4)
        anchors = self.anchor_generator(h, w)
        proposals = []
        for i, (height, width) in enumerate(sizes):
            k = min(self.pre_nms_topk, logits.shape[1])
            scores, top = logits[i].topk(k)
            boxes = clip_boxes_to_image(decode(deltas[i, top], anchors[top], (1.0, 1.0, 1.0, 1.0)), (height, width))
            keep = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
            boxes, scores = boxes[keep], scores[keep]
            keep = nms(boxes, scores, self.nms_thresh)[: self.post_nms_topk]
            proposals.append(boxes[keep])
        return proposals


class BoxPredictor(nn.Module):
    def __init__(self, dim, num_classes=1600, num_attrs=400, embed=256, attr_hidden=512):
        super().__init__()
        self.cls_score = nn.Linear(dim, num_classes + 1)
        self.bbox_pred = nn.Linear(dim, num_classes * 4)
        self.cls_embedding = nn.Embedding(num_classes + 1, embed)
        self.fc_attr = nn.Linear(dim + embed, attr_hidden)
        self.attr_score = nn.Linear(attr_hidden, num_attrs + 1)

    def forward(self, x):
        return self.cls_score(x), self.bbox_pred(x)

    def attributes(self, x, classes):
        """Attribute probabilities (without the last, "no attribute" column) given each region's class."""
        hidden = F.relu(self.fc_attr(torch.cat([x, self.cls_embedding(classes)], dim=1)))
        return torch.softmax(self.attr_score(hidden), dim=-1)[:, :-1]


class ROIHeads(nn.Module):
    def __init__(self, width, num_classes=1600, num_attrs=400):
        super().__init__()
        self.res5 = stage(3, 16 * width, 8 * width, 32 * width, stride=1, dilation=2)  # res5halve False
        self.box_predictor = BoxPredictor(32 * width, num_classes, num_attrs)

    def forward(self, features, proposals):
        regions = roi_pool(features, proposals, output_size=(14, 14), spatial_scale=1.0 / STRIDE)
        return self.res5(regions).mean(dim=(2, 3))


class GeneralizedRCNN(nn.Module):
    """Top-level names (`backbone`, `proposal_generator`, `roi_heads`) as in the checkpoint."""

    def __init__(self, width=64, num_classes=1600, num_attrs=400, pre_nms_topk=6000, post_nms_topk=300):
        super().__init__()
        self.backbone = Backbone(width)
        self.proposal_generator = RPN(16 * width, hidden=512 if width == 64 else 8 * width,
                                      pre_nms_topk=pre_nms_topk, post_nms_topk=post_nms_topk)
        self.roi_heads = ROIHeads(width, num_classes, num_attrs)


def decode(deltas, boxes, weights):
    """detectron2's Box2BoxTransform.apply_deltas (no +1) by torchvision's BoxCoder: deltas (N, K, 4) or (N, 4)
    for boxes (N, 4), the same shape back."""
    coder = BoxCoder(weights, bbox_xform_clip=SCALE_CLAMP)
    return coder.decode_single(deltas.reshape(len(boxes), -1), boxes).reshape(deltas.shape)


class VGPreprocess:
    """The checkpoint's input pipeline: BGR on the 0-255 scale, short side `min_size` (long <= `max_size`, sizes
    rounded int(x + 0.5)), bilinear (align_corners=False) on the float image, minus the Caffe BGR pixel mean."""

    def __init__(self, min_size=800, max_size=1333):
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, rgb):
        image = torch.tensor(rgb[:, :, ::-1].copy()).permute(2, 0, 1).float()
        size = shortest_edge_size(image.shape[1], image.shape[2], self.min_size, self.max_size)
        if size != tuple(image.shape[1:]):
            image = resize_bilinear(image, size)
        return image - torch.tensor(PIXEL_MEAN_BGR)[:, None, None]


def normalise_checkpoint(state, model):
    """The file may lack `num_batches_tracked` or store it with shape [1]; both mean the same for BatchNorm2d."""
    state = dict(state)
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            if key not in state:
                state[key] = torch.zeros((), dtype=value.dtype, device=state_device(state))
            elif tuple(state[key].shape) == (1,):
                state[key] = state[key].reshape(())
    return state


def state_device(state):
    return next(iter(state.values())).device if state else "cpu"


class VGFasterRCNN(Detector):
    name = "vg_frcnn"
    size_divisibility = 0
    background = -1  # the last of the 1601 class scores

    def __init__(self, weights=None, allow_random_weights=False, min_size=800, max_size=1333, rpn_pre_nms_top_n=6000,
                 rpn_post_nms_top_n=300, width=64, device="cpu", seed=0, state_dict=None):
        self.weights, self.width = weights, width
        self.feature_dim = 32 * width
        self.model = seeded_init(lambda: GeneralizedRCNN(width, pre_nms_topk=rpn_pre_nms_top_n,
                                                         post_nms_topk=rpn_post_nms_top_n), seed).eval()
        if weights is not None or state_dict is not None:
            self.load(state_dict if state_dict is not None else load_checkpoint(weights), weights or "state_dict")
        elif not allow_random_weights:
            raise ValueError("vg_frcnn: no --weights given; pass unc-nlp/frcnn-vg-finetuned's pytorch_model.bin, or "
                             "allow random weights explicitly (allow_random_weights=True / --allow-random-weights)")
        self.preprocess = VGPreprocess(min_size, max_size)
        self.to(device)

    def load(self, state, source):
        state = normalise_checkpoint(state, self.model)
        check_state_dict(self.model, state, source, hint=(
            "expected the VG ResNet-101 C4 checkpoint of unc-nlp/frcnn-vg-finetuned (pytorch_model.bin, 640 "
            "tensors); see mmf_pe/extraction/README.md"))
        self.model.load_state_dict(state, strict=True, assign=any(v.is_meta for v in state.values()))

    def describe(self):
        rpn = self.model.proposal_generator
        return {**super().describe(), "weights": self.weights, "min_size": self.preprocess.min_size,
                "max_size": self.preprocess.max_size, "rpn_pre_nms_top_n": rpn.pre_nms_topk,
                "rpn_post_nms_top_n": rpn.post_nms_topk, "width": self.width}

    def forward(self, batch, sizes):
        features = self.model.backbone(batch)
        proposals = self.model.proposal_generator(features, sizes)
        pooled = self.model.roi_heads(features, proposals)
        logits, deltas = self.model.roi_heads.box_predictor(pooled)
        outputs, start = [], 0
        for (height, width), props in zip(sizes, proposals):
            end = start + len(props)
            scores = torch.softmax(logits[start:end], dim=-1)
            per_class = deltas[start:end].reshape(end - start, deltas.shape[1] // 4, 4)
            if len(props) == 0:  # no valid proposal (all degenerate): Detector.extract uses one whole-image box
                class_boxes = per_class
            else:
                class_boxes = clip_boxes_to_image(decode(per_class, props, (10.0, 10.0, 5.0, 5.0)), (height, width))
            outputs.append((props, scores, class_boxes, self._feature_fn(features[len(outputs)], pooled[start:end])))
            start = end
        return outputs

    def _feature_fn(self, feature_map, pooled):
        def features(keep, boxes):
            if keep is not None:
                return pooled[keep]
            return self.model.roi_heads(feature_map[None], [boxes])

        return features
