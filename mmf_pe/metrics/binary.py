"""Binary-classification metrics of the whole evaluation set, matching rc10's definitions.

rc10: roc_auc on softmax(scores)[:, 1]; accuracy and binary_f1 (F1 of class 1) on argmax(scores). One-hot targets
are turned into class indices as rc10 does.
"""
import numpy as np


def positive_probability(scores):
    """P(class 1) from logits: softmax column 1 for (N, 2), sigmoid for (N,) or (N, 1)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 2 and scores.shape[1] >= 2:
        shifted = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp[:, 1] / exp.sum(axis=1)
    return 1.0 / (1.0 + np.exp(-scores.reshape(-1)))


def predicted_labels(scores):
    scores = np.asarray(scores)
    if scores.ndim == 2 and scores.shape[1] >= 2:
        return scores.argmax(axis=1)
    return (scores.reshape(-1) > 0).astype(np.int64)


def class_targets(targets):
    targets = np.asarray(targets)
    if targets.ndim == 2 and targets.shape[1] > 1:
        return targets.argmax(axis=1)
    return targets.reshape(-1).astype(np.int64)


def binary_metrics(scores=None, targets=None, probabilities=None):
    """{roc_auc, accuracy, binary_f1, average_precision, n} of one evaluation set.

    Give logits (`scores`) or `probabilities` of class 1. roc_auc / average_precision are None when only one class
    is present (undefined), so a caller never mistakes them for 0.
    """
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    labels = class_targets(targets)
    if probabilities is None:
        probabilities = positive_probability(scores)
        predictions = predicted_labels(scores)
    else:
        probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        predictions = (probabilities >= 0.5).astype(np.int64)
    if len(labels) != len(probabilities):
        raise ValueError(f"{len(labels)} targets but {len(probabilities)} predictions")
    both = len(np.unique(labels)) > 1
    return {
        "roc_auc": float(roc_auc_score(labels, probabilities)) if both else None,
        "accuracy": float((predictions == labels).mean()) if len(labels) else None,
        "binary_f1": float(f1_score(labels, predictions, average="micro", labels=[1])),
        "average_precision": float(average_precision_score(labels, probabilities)) if both else None,
        "n": int(len(labels)),
    }
