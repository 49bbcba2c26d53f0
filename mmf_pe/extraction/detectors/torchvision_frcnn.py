"""torchvision's Faster R-CNN ResNet-50 FPN (COCO, 91 classes incl. background at index 0) as a region extractor.

Proposals, class scores and box regression come from the detector itself; the 2048-d region features are RoIAlign
(7x7, averaged) on the C5 map (stride 32), which is what VisualBERT's 2048-d visual projection expects. `feature="fc7"`
gives the box head's 1024-d features instead (not usable with pretrained VisualBERT weights).
"""
import torch
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import FrozenBatchNorm2d, clip_boxes_to_image, roi_align

from mmf_pe.extraction.detectors.base import Detector, check_state_dict, load_checkpoint, seeded_init

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TorchvisionPreprocess:
    """torchvision's GeneralizedRCNNTransform for one image: RGB in [0, 1], normalise, then resize by one scale
    factor (short side `min_size`, long side <= `max_size`). Picklable, so it runs in DataLoader workers."""

    def __init__(self, min_size=800, max_size=1333):
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, rgb):
        image = torch.tensor(rgb).permute(2, 0, 1).float().div_(255.0)
        mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
        std = torch.tensor(IMAGENET_STD)[:, None, None]
        image = (image - mean) / std
        height, width = image.shape[-2:]
        scale = min(self.min_size / min(height, width), self.max_size / max(height, width))
        resized = torch.nn.functional.interpolate(
            image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
        )[0]
        return resized


class TorchvisionFRCNN(Detector):
    name = "torchvision_frcnn"
    size_divisibility = 32
    background = 0

    def __init__(self, weights=None, allow_random_weights=False, min_size=800, max_size=1333, rpn_pre_nms_top_n=1000,
                 rpn_post_nms_top_n=1000, feature="c5", roi_size=7, device="cpu", seed=0):
        if feature not in ("c5", "fc7"):
            raise ValueError(f"feature must be 'c5' (2048-d) or 'fc7' (1024-d), not {feature!r}")
        self.feature, self.roi_size = feature, roi_size
        self.feature_dim = 2048 if feature == "c5" else 1024
        self.weights = weights

        def build():
            backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d,
                                           trainable_layers=3)
            return FasterRCNN(backbone, num_classes=91, min_size=min_size, max_size=max_size,
                              rpn_pre_nms_top_n_test=rpn_pre_nms_top_n, rpn_post_nms_top_n_test=rpn_post_nms_top_n)

        self.model = seeded_init(build, seed).eval()
        if weights is not None:
            # FrozenBatchNorm2d has no counter; a checkpoint saved from a BatchNorm2d build has one per norm layer
            state = {k: v for k, v in load_checkpoint(weights).items() if not k.endswith("num_batches_tracked")}
            check_state_dict(self.model, state, weights, hint=(
                "expected torchvision's fasterrcnn_resnet50_fpn COCO weights (e.g. fasterrcnn_resnet50_fpn_coco-"
                "258fb6c6.pth); v2 weights (fasterrcnn_resnet50_fpn_v2) have a different layout"))
            self.model.load_state_dict(state, strict=True)
        elif not allow_random_weights:
            raise ValueError("torchvision_frcnn: no --weights given; pass the COCO weights file, or allow random "
                             "weights explicitly (allow_random_weights=True / --allow-random-weights) for testing")
        self.preprocess = TorchvisionPreprocess(min_size, max_size)
        self.to(device)

    def describe(self):
        return {**super().describe(), "feature": self.feature, "weights": self.weights,
                "min_size": self.preprocess.min_size, "max_size": self.preprocess.max_size,
                "rpn_pre_nms_top_n": self.model.rpn._pre_nms_top_n["testing"],
                "rpn_post_nms_top_n": self.model.rpn._post_nms_top_n["testing"]}

    def forward(self, batch, sizes):
        model = self.model
        images = ImageList(batch, sizes)
        body = model.backbone.body(batch)
        fpn = model.backbone.fpn(body)
        proposals, _ = model.rpn(images, fpn)
        pooled = model.roi_heads.box_roi_pool(fpn, proposals, sizes)
        box_features = model.roi_heads.box_head(pooled)
        logits, deltas = model.roi_heads.box_predictor(box_features)
        class_boxes = model.roi_heads.box_coder.decode(deltas, proposals)  # (sum R, 91, 4)
        outputs, start = [], 0
        for i, props in enumerate(proposals):
            end = start + len(props)
            scores = torch.softmax(logits[start:end], dim=-1)
            boxes_i = clip_boxes_to_image(class_boxes[start:end, 1:], sizes[i])
            head_i = box_features[start:end]
            outputs.append((props, scores, boxes_i, self._feature_fn(body["3"][i: i + 1], fpn, i, head_i, sizes)))
            start = end
        return outputs

    def _feature_fn(self, c5, fpn, index, head_features, sizes):
        def features(keep, boxes):
            if self.feature == "c5":
                regions = roi_align(c5, [boxes], output_size=self.roi_size, spatial_scale=1 / 32.0, sampling_ratio=2,
                                    aligned=True)
                return regions.mean(dim=(2, 3))
            if keep is not None:
                return head_features[keep]
            level_maps = {name: value[index: index + 1] for name, value in fpn.items()}
            pooled = self.model.roi_heads.box_roi_pool(level_maps, [boxes], [sizes[index]])
            return self.model.roi_heads.box_head(pooled)

        return features
