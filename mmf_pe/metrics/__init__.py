"""Exact evaluation metrics: predictions gathered from every process, then scored once.

rc10 computes roc_auc per process and averages the results, which is not the AUROC of the evaluation set. Here each
process contributes its scores/targets/ids, `gather_predictions` concatenates them (dropping the duplicates a
distributed sampler pads in), and `binary_metrics` scores the whole set. Works unchanged with no process group.
"""
from mmf_pe.metrics.binary import binary_metrics, positive_probability, predicted_labels
from mmf_pe.metrics.gather import gather_predictions, get_rank, get_world_size, is_main_process

__all__ = [
    "binary_metrics",
    "gather_predictions",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "positive_probability",
    "predicted_labels",
]
