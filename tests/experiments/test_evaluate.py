"""`mmf_pe evaluate` of a run made with text normalisation on scores a disguised caption exactly as its plain twin."""
import csv
import glob
import os


def test_evaluate_scores_disguised_captions_as_their_plain_twins(tiny_run, monkeypatch):
    from mmf_pe.experiments.evaluate import evaluate_run

    monkeypatch.setenv("MMF_DATA_DIR", tiny_run["data"]["data_dir"])
    assert all(t["text"] != r["text"] for t, r in zip(tiny_run["twins"], tiny_run["records"]))
    evaluate_run(tiny_run["save_dir"], splits=["twins:hateful_memes/defaults/annotations/twins.jsonl"])
    path, = glob.glob(os.path.join(tiny_run["save_dir"], "**", "predictions", "twins.csv"), recursive=True)
    rows = {int(row["id"]): row for row in csv.DictReader(open(path))}
    assert len(rows) == 2 * len(tiny_run["records"])
    probabilities = {i: float(next(v for k, v in row.items() if "prob" in k or "score" in k))
                     for i, row in rows.items()}
    for record in tiny_run["records"]:
        assert probabilities[record["id"] + 50000] == probabilities[record["id"]]
