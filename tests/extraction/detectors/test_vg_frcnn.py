"""The VG ResNet-101 C4 model: layout of the public checkpoint, strict loading, preprocessing facts, a forward pass."""
import json
import os

import numpy as np
import pytest
import torch

from mmf_pe.extraction.detectors import build_detector
from mmf_pe.extraction.detectors.base import shortest_edge_size
from mmf_pe.extraction.detectors.vg_frcnn import PIXEL_MEAN_BGR, GeneralizedRCNN, VGFasterRCNN, VGPreprocess
from mmf_pe.extraction.selection import SelectionConfig
from tests.extraction.helpers import random_rgb

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "vg_frcnn_layout.json")


def expected_layout():
    """Expand the hand-written fixture into {key: shape} independently of the model code."""
    spec = json.load(open(FIXTURE))
    norm = spec["norm_suffixes"]
    layout = {}

    def conv(name, shape):
        layout[f"{name}.weight"] = tuple(shape)
        for suffix in norm:
            layout[f"{name}.norm.{suffix}"] = () if suffix == "num_batches_tracked" else (shape[0],)

    conv(spec["stem"]["key"], spec["stem"]["shape"])
    for s in spec["stages"]:
        for b in range(s["blocks"]):
            cin = s["in"] if b == 0 else s["out"]
            name = f"{s['prefix']}.{b}"
            if b == 0:
                conv(f"{name}.shortcut", [s["out"], s["in"], 1, 1])
            conv(f"{name}.conv1", [s["bottleneck"], cin, 1, 1])
            conv(f"{name}.conv2", [s["bottleneck"], s["bottleneck"], 3, 3])
            conv(f"{name}.conv3", [s["out"], s["bottleneck"], 1, 1])
    layout.update({k: tuple(v) for k, v in spec["other"].items()})
    return layout, spec


def meta_model():
    with torch.device("meta"):
        return GeneralizedRCNN()


def test_model_matches_the_documented_checkpoint_layout():
    layout, spec = expected_layout()
    model = meta_model()
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == layout
    totals = spec["totals"]
    assert len(state) == totals["entries"]
    assert len(list(model.parameters())) == totals["parameters"]
    assert len(list(model.buffers())) == totals["buffers"]
    assert sum(v.numel() for v in state.values()) == totals["elements"]
    for prefix, count in totals["per_prefix"].items():
        assert sum(k.startswith(prefix + ".") for k in state) == count, prefix
    assert all(state[k].dtype == torch.int64 for k in state if k.endswith("num_batches_tracked"))


def test_anchors_and_preprocessing_follow_the_checkpoint_config():
    spec = json.load(open(FIXTURE))
    model = GeneralizedRCNN(width=8)
    anchors = model.proposal_generator.anchor_generator.cell_anchors[0]
    assert anchors.shape == (12, 4)
    assert torch.allclose(anchors[0], torch.tensor(spec["first_cell_anchor"]["value"]), atol=0.01)
    assert shortest_edge_size(427, 640, 800, 1333) == (800, 1199)
    assert shortest_edge_size(100, 1000, 800, 1333) == (133, 1333)
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red: in BGR order it is the last channel
    out = VGPreprocess(4, 100)(rgb)
    assert out.shape == (3, 4, 6)
    assert torch.allclose(out[:, 0, 0], torch.tensor([0.0, 0.0, 200.0]) - torch.tensor(PIXEL_MEAN_BGR))


def synthetic_checkpoint(width, seed=1):
    """A checkpoint with the VG key layout at reduced width, random values (a stand-in for pytorch_model.bin)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in GeneralizedRCNN(width=width).state_dict().items():
        if value.dtype.is_floating_point:
            state[key] = torch.randn(value.shape, generator=generator) * 0.01
        else:
            state[key] = torch.tensor([7])  # num_batches_tracked stored with shape [1], as converted files do
    return state


def test_strict_load_of_a_synthetic_checkpoint(tmp_path):
    state = synthetic_checkpoint(width=4)
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path)
    detector = VGFasterRCNN(weights=str(path), width=4, min_size=64, max_size=96)
    loaded = detector.model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key].reshape(value.shape), value), key
    # num_batches_tracked absent also loads (BatchNorm2d semantics)
    without = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    VGFasterRCNN(width=4, state_dict=without)


def test_wrong_checkpoints_give_a_clear_error(tmp_path):
    state = synthetic_checkpoint(width=4)
    broken = dict(state)
    del broken["roi_heads.box_predictor.attr_score.bias"]
    broken["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(91, 128)
    broken["roi_heads.box_head.fc6.weight"] = torch.zeros(2, 2)
    path = tmp_path / "wrong.pth"
    torch.save({"model": broken}, path)
    with pytest.raises(ValueError) as error:
        VGFasterRCNN(weights=str(path), width=4)
    message = str(error.value)
    assert str(path) in message
    assert "missing (1): roi_heads.box_predictor.attr_score.bias" in message
    assert "unexpected (1): roi_heads.box_head.fc6.weight" in message
    assert "roi_heads.box_predictor.cls_score.weight: file (91, 128)" in message
    assert "unc-nlp/frcnn-vg-finetuned" in message
    with pytest.raises(ValueError, match="no --weights"):
        VGFasterRCNN(width=4)


def test_real_size_strict_load_with_meta_tensors():
    """The full-size layout loads through the same checks (meta tensors: no 262 MB in memory)."""
    layout, _ = expected_layout()
    with torch.device("meta"):
        state = {k: torch.empty(shape, dtype=torch.int64 if k.endswith("tracked") else torch.float32)
                 for k, shape in layout.items()}
        detector = VGFasterRCNN.__new__(VGFasterRCNN)
        detector.model = GeneralizedRCNN()
    detector.load(state, "meta checkpoint")
    assert detector.model.roi_heads.box_predictor.bbox_pred.weight.shape == (6400, 2048)
    bad = dict(state)
    with torch.device("meta"):
        bad["proposal_generator.rpn_head.conv.weight"] = torch.empty(1024, 1024, 3, 3)  # hidden 1024, not 512
    with pytest.raises(ValueError, match=r"rpn_head.conv.weight: file \(1024, 1024, 3, 3\)"):
        detector.load(bad, "meta checkpoint")


def test_forward_gives_records_for_both_selections():
    detector = build_detector("vg_frcnn", allow_random_weights=True, width=8, min_size=96, max_size=160,
                              rpn_pre_nms_top_n=100, rpn_post_nms_top_n=12)
    rgb = random_rgb(60, 90)
    image = detector.preprocess(rgb)
    assert image.shape == (3, 96, 144)
    for method in ("vmb", "vg_demo"):
        (record,) = detector.extract([image], [rgb.shape[:2]], SelectionConfig(method, max_boxes=5, min_boxes=5))
        n = record["num_boxes"]
        assert 1 <= n <= 5 and record["features"].shape == (n, 256)
        assert record["cls_prob"].shape == (n, 1601)
        assert record["objects"].max() < 1600  # background (last column) never chosen
        assert (record["bbox"][:, 2] <= 90 + 1e-3).all() and (record["bbox"][:, 3] <= 60 + 1e-3).all()
        assert np.isfinite(record["features"]).all()
