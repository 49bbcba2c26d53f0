"""`mmf_pe adapt`: a new adapter version on a new period, published to the real server (uvicorn on 127.0.0.1)
while requests are in flight; lineage; refusals of bad input."""
import json
import os
import threading
import time

import pytest
import requests

from mmf_pe.experiments import adapt
from mmf_pe.experiments.periods import data_fingerprint, load_examples, open_adapter, score_examples
from mmf_pe.metrics.binary import binary_metrics
from mmf_pe.serve.layout import fingerprint
from tests.experiments.helpers import make_period
from tests.serve.helpers import ADMIN_TOKEN, OfflineScorer, ThreadedServer, npy_bytes, read_files


def _auroc(engine, version, examples):
    probabilities = score_examples(engine, version, examples)
    return binary_metrics(probabilities=probabilities, targets=[e.label for e in examples])["roc_auc"]


def test_adapt_publishes_to_a_running_server_with_requests_in_flight(periods, served_copy, tmp_path, monkeypatch,
                                                                     capsys):
    from mmf_pe.serve.app import Settings, create_app

    probe = load_examples(*periods["new_eval"])[:6]
    parent = os.path.join(served_copy, "pe")
    parent_fingerprint = fingerprint(*read_files(parent))
    published = {}
    real_publish = adapt.publish

    def timed_publish(*args, **kwargs):
        published["sent"] = time.monotonic()
        result = real_publish(*args, **kwargs)
        published["answered"] = time.monotonic()
        return result

    monkeypatch.setattr(adapt, "publish", timed_publish)
    monkeypatch.setenv("MMF_PE_ADMIN_TOKEN", ADMIN_TOKEN)
    settings = Settings(served_copy, max_batch=4, max_wait_ms=5, timeout_s=60, poll_s=0.2, admin_token=ADMIN_TOKEN,
                        score_token="")
    answers, stop = [], threading.Event()

    def client(offset):
        index = offset
        while not stop.is_set():
            example = probe[index % len(probe)]
            sent = time.monotonic()
            response = requests.post(f"{server.url}/v1/score", data={"adapter": "pe", "text": example.text},
                                     files={"features": ("f.npy", npy_bytes(example.features.numpy()))}, timeout=120)
            answers.append((sent, time.monotonic(), index % len(probe), response.status_code, response.json()))
            index += 1

    out = str(tmp_path / "pe_v2")
    with ThreadedServer(create_app(settings)) as server:
        clients = [threading.Thread(target=client, args=(k,)) for k in range(3)]
        for thread in clients:
            thread.start()
        while len(answers) < 6:  # traffic flows before the new version exists
            time.sleep(0.05)
        code = adapt.main(["--from", parent, "--data", periods["new"][0], "--features", periods["new"][1],
                           "--replay", "16", "--old-data", periods["old"][0], "--old-features", periods["old"][1],
                           "--budget-minutes", "1", "--epochs", "8", "--lr", "3e-3", "--out", out,
                           "--publish", server.url, "--name", "pe"])
        after = len(answers)
        while len(answers) < after + 6:  # and keeps flowing after the swap
            time.sleep(0.05)
        stop.set()
        for thread in clients:
            thread.join(60)
        listed = requests.get(f"{server.url}/v1/adapters", timeout=30).json()
    assert code == 0, capsys.readouterr().err
    new_fingerprint = fingerprint(*read_files(out))
    assert f"fingerprint {new_fingerprint}" in capsys.readouterr().out
    assert {a["name"]: a["fingerprint"] for a in listed["adapters"]}["pe"] == new_fingerprint
    assert all(status == 200 for _, _, _, status, _ in answers)
    before = [body for _, done, _, _, body in answers if done < published["sent"]]
    later = [(index, body) for sent, _, index, _, body in answers if sent > published["answered"]]
    assert len(before) >= 6 and len(later) >= 6
    assert {body["adapter"]["fingerprint"] for body in before} == {parent_fingerprint}
    assert {body["adapter"]["fingerprint"] for _, body in later} == {new_fingerprint}
    assert {body["adapter"]["fingerprint"] for *_, body in answers} <= {parent_fingerprint, new_fingerprint}
    offline = OfflineScorer(periods["base"], out, periods["tokenizer"])  # the served version is the one trained
    for index, body in later[:3]:
        assert body["probability"] == pytest.approx(offline(probe[index].text, probe[index].features.numpy()),
                                                    abs=1e-5)

    lineage = json.load(open(os.path.join(out, "adapter_config.json")))["lineage"]
    new_examples = load_examples(*periods["new"])
    assert lineage["parent"]["fingerprint"] == parent_fingerprint and lineage["generation"] == 1
    assert lineage["data"]["labels"] == 64 and lineage["data"]["positives"] == 32
    assert lineage["data"]["fingerprint"] == data_fingerprint(new_examples)
    assert lineage["replay"]["used"] == 16 and lineage["training"]["updates"] > 0

    engine, parent_version, _, _ = open_adapter(os.path.join(periods["served"], "pe"))
    _, child_version, _, _ = open_adapter(out, base=periods["served"], engine=engine)
    held_out = load_examples(*periods["new_eval"])
    assert _auroc(engine, child_version, held_out) > _auroc(engine, parent_version, held_out) + 0.05


@pytest.mark.parametrize("case", ["foreign", "empty", "one_class", "replay_without_old", "no_token", "not_served",
                                  "no_time_to_train"])
def test_adapt_refuses_bad_input(case, periods, served_copy, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MMF_PE_ADMIN_TOKEN", raising=False)
    data, features = periods["new"]
    parent = os.path.join(served_copy, "pe")
    extra = []
    if case == "foreign":
        parent = os.path.join(periods["spare"], "foreign")
        extra = ["--base", served_copy]
        expected = f"{parent}: trained on other base weights"
    elif case == "empty":
        data = str(tmp_path / "empty.jsonl")
        open(data, "w").close()
        expected = f"{data}: no labelled examples"
    elif case == "one_class":
        data, features = make_period(str(tmp_path), "ones", "new", 5, seed=9, labels=[1] * 5)
        expected = f"{data}: all 5 labels are 1 (first at {data}:1)"
    elif case == "replay_without_old":
        extra = ["--replay", "4"]
        expected = "--replay K needs the old period's labelled examples"
    elif case == "no_token":
        extra = ["--publish", "http://127.0.0.1:9", "--name", "pe"]
        expected = "needs its admin token in $MMF_PE_ADMIN_TOKEN"
    elif case == "not_served":
        extra = ["--publish", str(tmp_path), "--name", "pe"]
        expected = f"{tmp_path}: not a served folder"
    else:
        extra = ["--budget-minutes", "0.001"]
        expected = "was spent reading the data and the base before one update"
    code = adapt.main(["--from", parent, "--data", data, "--features", features, "--budget-minutes", "0.2",
                       "--epochs", "1", "--out", str(tmp_path / "out"), *extra])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out" / "adapter_config.json")
