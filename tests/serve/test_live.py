"""The real server (uvicorn on 127.0.0.1): concurrent scoring while an adapter is replaced, checked against offline
scores; admin guarded by the bearer token; replicas follow the folder."""
import concurrent.futures
import os
import threading
import time

import pytest
import requests

from tests.serve.helpers import ADMIN_TOKEN, OfflineScorer, feature_set, npy_bytes, read_files

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def offline_table(served, adapter_dirs, items):
    """{fingerprint: [probability per item]} for each adapter folder."""
    from mmf_pe.serve.layout import fingerprint

    table = {}
    for path in adapter_dirs:
        scorer = OfflineScorer(served["base"], path, served["tokenizer"])
        table[fingerprint(*read_files(path))] = [scorer(text, features) for text, features in items]
    return table


def score(url, adapter, text, features, as_json=False):
    if as_json:
        return requests.post(f"{url}/v1/score", json={"adapter": adapter, "text": text,
                                                      "features": features.tolist()}, timeout=120)
    return requests.post(f"{url}/v1/score", data={"adapter": adapter, "text": text},
                         files={"features": ("f.npy", npy_bytes(features))}, timeout=120)


def test_concurrent_scoring_while_an_adapter_is_replaced(server, tmp_path):
    served = server.served
    items = feature_set(12)
    pe_v1 = os.path.realpath(os.path.join(served["served"], "pe"))
    pe_v1_copy = tmp_path / "pe_v1"  # the folder is replaced below: keep the first version's files
    pe_v1_copy.mkdir()
    for name, data in zip(("adapter_config.json", "adapter_model.safetensors"), read_files(pe_v1)):
        (pe_v1_copy / name).write_bytes(data)
    pe_v2 = os.path.join(served["spare"], "pe_v2")
    expected = offline_table(served, [str(pe_v1_copy), pe_v2, os.path.join(served["served"], "fc"),
                                      os.path.join(served["served"], "lora")], items)
    names = {fp: n for fp, n in zip(expected, ["pe", "pe", "fc", "lora"])}
    swapped = threading.Event()
    jobs = [(i, ["pe", "fc", "lora", "pe"][i % 4], i % len(items)) for i in range(72)]

    def one(job):
        position, adapter, index = job
        if position >= 36:
            swapped.wait(60)  # the second half is sent after the swap has been answered
        text, features = items[index]
        response = score(server.url, adapter, text, features, as_json=index == 0)
        return adapter, index, response.status_code, response.json()

    def swap():
        time.sleep(0.3)  # while the first requests are queued / running
        config, weights = read_files(pe_v2)
        answer = requests.post(f"{server.url}/v1/adapters/pe", headers=AUTH, timeout=120,
                               files={"config": ("adapter_config.json", config),
                                      "weights": ("adapter_model.safetensors", weights)})
        swapped.set()
        return answer

    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        swap_future = pool.submit(swap)
        results = list(pool.map(one, jobs))
    answer = swap_future.result()
    assert answer.status_code == 201, answer.text
    assert answer.json()["replaced"] is True
    seen, batch_sizes = set(), []
    for adapter, index, status, body in results:
        assert status == 200, body
        fingerprint = body["adapter"]["fingerprint"]
        assert body["adapter"]["name"] == adapter and names[fingerprint] == adapter
        assert body["probability"] == pytest.approx(expected[fingerprint][index], abs=1e-5), (adapter, index)
        threshold = 0.3 if fingerprint == answer.json()["fingerprint"] else 0.5
        assert body["threshold"] == threshold and body["label"] == int(body["probability"] >= threshold)
        assert set(body["timings_ms"]) == {"features", "queue", "model", "ocr", "total"}
        seen.add(fingerprint)
        batch_sizes.append(body["batch_size"])
    assert len(seen) == 4  # both PE versions answered, plus fc and lora
    assert max(batch_sizes) > 1  # micro-batching happened
    late_pe = [body for adapter, index, status, body in results[36:] if adapter == "pe"]
    assert all(b["adapter"]["fingerprint"] == answer.json()["fingerprint"] for b in late_pe)
    metrics = requests.get(f"{server.url}/metrics", timeout=30).text
    assert 'mmf_pe_requests_total{adapter="lora",status="200"}' in metrics
    assert "mmf_pe_batch_size_bucket" in metrics and "mmf_pe_queue_depth" in metrics


def test_switching_adapters_shares_one_base(server):
    """Every kind's frozen parameters are the base's tensors (same storage), not copies."""
    from mmf_pe.tuners.peft_methods.model import base_key

    app_engine = server.server.config.app.state.engine
    assert len(app_engine.kinds) >= 3  # fc, paper, lora
    for kind in app_engine.kinds.values():
        for name, parameter in kind.model.named_parameters():
            if name not in kind.slots:
                assert parameter.data_ptr() == app_engine.base_tensors[base_key(name)].data_ptr(), name


def test_admin_needs_the_token(server, served):
    config, weights = read_files(os.path.join(served["spare"], "pe_v2"))
    files = {"config": ("c.json", config), "weights": ("w.safetensors", weights)}
    assert requests.post(f"{server.url}/v1/adapters/new", files=files, timeout=60).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert requests.post(f"{server.url}/v1/adapters/new", files=files, headers=wrong, timeout=60).status_code == 401
    assert requests.delete(f"{server.url}/v1/adapters/fc", timeout=60).status_code == 401
    # an adapter of another base, or a broken file, is refused before anything is written
    foreign = read_files(os.path.join(served["spare"], "foreign"))
    refused = requests.post(f"{server.url}/v1/adapters/new", headers=AUTH, timeout=60,
                            files={"config": ("c.json", foreign[0]), "weights": ("w.safetensors", foreign[1])})
    assert refused.status_code == 422 and "other base weights" in refused.json()["error"]
    broken = requests.post(f"{server.url}/v1/adapters/new", headers=AUTH, timeout=60,
                           files={"config": ("c.json", config), "weights": ("w.safetensors", b"\x00" * 64)})
    assert broken.status_code == 422 and "safetensors" in broken.json()["error"]
    assert not os.path.exists(os.path.join(served["served"], "new"))
    # add, score, remove, then it is unknown
    added = requests.post(f"{server.url}/v1/adapters/new", files=files, headers=AUTH, timeout=60)
    assert added.status_code == 201, added.text
    text, features = feature_set(1)[0]
    assert score(server.url, "new", text, features).status_code == 200
    assert requests.delete(f"{server.url}/v1/adapters/new", headers=AUTH, timeout=60).status_code == 200
    gone = score(server.url, "new", text, features)
    assert gone.status_code == 404 and "unknown adapter 'new'" in gone.json()["error"]


def test_admin_refused_when_no_token_is_configured(served):
    from fastapi.testclient import TestClient

    from mmf_pe.serve.app import Settings, create_app

    app = create_app(Settings(served["served"], admin_token="", score_token=""))
    with TestClient(app) as client:
        answer = client.delete("/v1/adapters/fc", headers={"Authorization": "Bearer anything"})
    assert answer.status_code == 403 and "MMF_PE_ADMIN_TOKEN" in answer.json()["error"]
    assert os.path.isdir(os.path.join(served["served"], "fc"))


def test_a_replica_follows_the_folder(server, served):
    """A second replica over the same folder sees an adapter another replica added, then its removal."""
    from mmf_pe.serve.adapters import Adapters

    replica = Adapters(server.server.config.app.state.engine)
    replica.refresh()
    assert "extra" not in replica.names()
    config, weights = read_files(os.path.join(served["spare"], "pe_v2"))
    added = requests.post(f"{server.url}/v1/adapters/extra", headers=AUTH, timeout=60,
                          files={"config": ("c.json", config), "weights": ("w.safetensors", weights)})
    assert added.status_code == 201
    assert "extra" in replica.refresh() and replica.get("extra").fingerprint == added.json()["fingerprint"]
    requests.delete(f"{server.url}/v1/adapters/extra", headers=AUTH, timeout=60)
    assert "extra" in replica.refresh() and replica.get("extra") is None


def test_health_and_readiness(server):
    assert requests.get(f"{server.url}/healthz", timeout=30).json() == {"status": "ok"}
    ready = requests.get(f"{server.url}/readyz", timeout=30)
    assert ready.status_code == 200 and {"fc", "pe", "lora"} <= set(ready.json()["adapters"])
    listing = requests.get(f"{server.url}/v1/adapters", timeout=30).json()
    assert listing["default"] == "pe"
    accepts = {a["name"]: a["accepts_images"] for a in listing["adapters"]}
    assert accepts["pe_img"] is True and accepts["fc"] is False


def test_full_queue_answers_429_and_a_timeout_504_at_once(server, served):
    """Queue bound 0: every request is refused at once with 429; timeout 0: 504. Neither blocks the service."""
    from fastapi.testclient import TestClient

    from mmf_pe.serve.app import Settings, create_app

    text, features = feature_set(1)[0]
    files = {"features": ("f.npy", npy_bytes(features))}
    engine = server.server.config.app.state.engine  # the same loaded base: no second copy needed
    for settings, status, words in ((Settings(served["served"], max_queue=0, admin_token="", score_token=""), 429,
                                     "server busy"),
                                    (Settings(served["served"], timeout_s=0.0, admin_token="", score_token=""), 504,
                                     "request timeout")):
        with TestClient(create_app(settings, engine=engine)) as client:
            started = time.perf_counter()
            answer = client.post("/v1/score", data={"adapter": "fc", "text": text}, files=files)
            assert answer.status_code == status and words in answer.json()["error"], answer.text
            assert time.perf_counter() - started < 5
            if status == 429:
                assert answer.headers["retry-after"] == "1"
            assert 'status="%d"' % status in client.get("/metrics").text
