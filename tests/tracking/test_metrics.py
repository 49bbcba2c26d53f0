"""Exact global metrics: gathered predictions scored once equal sklearn on the concatenated set."""
import json
import os

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score

from mmf_pe.metrics import binary_metrics, gather_predictions, positive_probability
from tests.tracking.helpers import gather_worker


def test_binary_metrics_follow_rc10_definitions():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.5, 0.4], [-1.0, 1.0], [0.0, 0.2]])
    targets = np.array([0, 1, 1, 1, 0])
    probability = np.exp(logits[:, 1]) / np.exp(logits).sum(1)
    metrics = binary_metrics(logits, targets)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(targets, probability))
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["binary_f1"] == pytest.approx(f1_score(targets, logits.argmax(1)))
    assert metrics["n"] == 5
    np.testing.assert_allclose(positive_probability(logits), probability)
    one_hot = np.eye(2)[targets]
    assert binary_metrics(logits, one_hot)["roc_auc"] == metrics["roc_auc"]
    assert binary_metrics(logits, np.zeros(5))["roc_auc"] is None  # undefined with one class, never 0


def test_gather_without_process_group_only_converts():
    scores, targets, ids = gather_predictions(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), torch.arange(4))
    assert scores.shape == (4, 2) and targets.tolist() == [0, 1, 0, 1] and ids.tolist() == [0, 1, 2, 3]
    scores, targets, ids = gather_predictions(torch.randn(3, 2), None, torch.arange(3))  # an unlabelled split
    assert scores.shape == (3, 2) and targets is None and ids.tolist() == [0, 1, 2]


def test_unlabelled_predictions_file(tmp_path):
    from mmf_pe.tracking.session import write_predictions

    path = tmp_path / "test.csv"
    write_predictions(str(path), {"scores": np.array([[0.0, 2.0], [1.0, 0.0]]), "targets": None,
                                  "ids": np.array([11, 12])})
    rows = path.read_text().splitlines()
    assert rows[0] == "id,proba,target,prediction" and rows[1].startswith("11,") and rows[1].endswith(",,1")
    assert rows[2].startswith("12,") and rows[2].endswith(",,0")


def _constructed_case():
    """Rank 0 ranks its own samples perfectly, rank 1 too, but rank 1's scores sit below rank 0's negatives: the
    average of per-rank AUROCs is 1.0, the global AUROC is not. Rank 1 repeats id 0 (sampler padding)."""
    rank0 = {"p": [0.9, 0.8, 0.7, 0.6], "y": [1, 1, 0, 0], "ids": [0, 1, 2, 3]}
    rank1 = {"p": [0.5, 0.4, 0.3, 0.2, 0.9], "y": [1, 1, 0, 0, 1], "ids": [4, 5, 6, 7, 0]}
    data = []
    for part in (rank0, rank1):
        logit = np.log(np.array(part["p"]) / (1 - np.array(part["p"])))
        data.append({"scores": np.stack([np.zeros_like(logit), logit], 1).tolist(), "targets": part["y"],
                     "ids": part["ids"]})
    return data


def test_global_auroc_over_two_gloo_processes(tmp_path):
    data = _constructed_case()
    torch.multiprocessing.spawn(gather_worker, args=(2, str(tmp_path / "store"), str(tmp_path), data), nprocs=2)
    results = [json.load(open(os.path.join(tmp_path, f"rank{r}.json"))) for r in range(2)]

    all_p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])  # the padded duplicate (id 0) counted once
    all_y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    expected = roc_auc_score(all_y, all_p)
    per_rank_average = np.mean([roc_auc_score(d["targets"][:4], np.array(d["scores"])[:4, 1]) for d in data])
    assert per_rank_average == pytest.approx(1.0) and expected == pytest.approx(0.75)
    for result in results:  # every rank sees the same global numbers
        assert result["n"] == 8 and sorted(result["ids"]) == list(range(8))
        assert result["gathered"]["roc_auc"] == pytest.approx(expected)
        assert result["trainer"]["roc_auc"] == pytest.approx(expected, abs=1e-6)
        assert result["trainer"]["n"] == 8
        unlabelled = result["unlabelled"]  # a split without labels: scores and ids gathered, no metric invented
        assert unlabelled["targets"] is None and sorted(unlabelled["ids"]) == list(range(8)) and unlabelled["n"] == 8
        assert len(unlabelled["scores"]) == 8 and not any("roc_auc" in name for name in unlabelled["meters"])
