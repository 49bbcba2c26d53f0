"""Box selection recipes on hand-made scores."""
import torch

from mmf_pe.extraction.selection import SelectionConfig, select_vg_demo, select_vmb


def test_vmb_per_class_nms_then_rank_by_best_surviving_score():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]], dtype=torch.float32)
    # columns: background, class A, class B
    scores = torch.tensor([[0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    keep, objects = select_vmb(boxes, scores, background=0, config=SelectionConfig(max_boxes=2, min_boxes=1))
    # box 1 loses class A to box 0 (same place) but wins class B; box 2's best surviving score is 0.3
    assert keep.tolist() == [0, 1] and objects.tolist() == [0, 1]
    keep, _ = select_vmb(boxes, scores, 0, SelectionConfig(max_boxes=5, min_boxes=1, conf_thresh=0.75))
    assert keep.tolist() == [0]  # only box 0 reaches 0.75; min_boxes 1
    keep, _ = select_vmb(boxes, scores, 0, SelectionConfig(max_boxes=5, min_boxes=3, conf_thresh=0.75))
    assert keep.tolist() == [0, 1, 2]  # min_boxes fills up by rank


def test_vg_demo_raises_the_nms_threshold_until_enough_boxes():
    per_class = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 13], [0, 0, 10, 16]], dtype=torch.float32)[:, None, :]
    per_class = per_class.expand(3, 2, 4)
    scores = torch.tensor([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.7, 0.2, 0.1]])  # background is the last column
    keep, objects = select_vg_demo(per_class, scores, background=-1, config=SelectionConfig("vg_demo", 3, 1))
    assert keep.tolist() == [0]  # IoU 0.77 / 0.625 suppress at 0.5, min 1 reached
    keep, _ = select_vg_demo(per_class, scores, -1, SelectionConfig("vg_demo", 3, 2))
    assert keep.tolist() == [0, 2]  # 0.5 and 0.6 leave one box; at 0.7 box 2 (IoU 0.625) survives, box 1 (0.77) not
    assert objects.tolist() == [0]
