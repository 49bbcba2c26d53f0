"""torchvision Faster R-CNN R50-FPN: strict loading of a user weights file, clear errors, feature options."""
import numpy as np
import pytest
import torch

from mmf_pe.extraction.detectors.torchvision_frcnn import TorchvisionFRCNN
from mmf_pe.extraction.detectors.vg_frcnn import GeneralizedRCNN
from mmf_pe.extraction.selection import SelectionConfig
from tests.extraction.helpers import random_rgb

SMALL = dict(min_size=64, max_size=96, rpn_pre_nms_top_n=40, rpn_post_nms_top_n=20)


def test_loads_a_torchvision_state_dict_strictly_and_rejects_others(tmp_path):
    reference = TorchvisionFRCNN(allow_random_weights=True, seed=3, **SMALL)
    state = {k: v.half() for k, v in reference.model.state_dict().items()}  # half size on disk; values still load
    state["backbone.body.bn1.num_batches_tracked"] = torch.tensor(0)  # as saved from a BatchNorm2d build
    path = tmp_path / "coco.pth"
    torch.save(state, path)
    loaded = TorchvisionFRCNN(weights=str(path), **SMALL)
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, state[key].float()), key
    wrong = tmp_path / "vg.pth"
    torch.save(GeneralizedRCNN(width=2).state_dict(), wrong)
    with pytest.raises(ValueError, match=r"(?s)does not match.*missing.*unexpected.*fasterrcnn_resnet50_fpn"):
        TorchvisionFRCNN(weights=str(wrong), **SMALL)
    with pytest.raises(FileNotFoundError, match="not found"):
        TorchvisionFRCNN(weights=str(tmp_path / "absent.pth"), **SMALL)


def test_fc7_features_are_1024_d_and_c5_2048_d():
    rgb = random_rgb(48, 64)
    for feature, dim in (("c5", 2048), ("fc7", 1024)):
        detector = TorchvisionFRCNN(allow_random_weights=True, feature=feature, **SMALL)
        assert detector.feature_dim == dim
        (record,) = detector.extract([detector.preprocess(rgb)], [rgb.shape[:2]], SelectionConfig(max_boxes=4,
                                                                                                  min_boxes=4))
        assert record["features"].shape == (record["num_boxes"], dim) and np.isfinite(record["features"]).all()
