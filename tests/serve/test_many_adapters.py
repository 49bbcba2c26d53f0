"""Thousands of adapters, N in memory (issue 25): lazy loads, LRU eviction under concurrent scoring while adapters
are added, replaced and removed; every answer is its adapter version's offline score and names that version."""
import os
import random
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import torch

from tests.serve.helpers import (
    ADMIN_TOKEN,
    MAX_SEQ,
    ThreadedServer,
    build,
    feature_set,
    on_base,
    read_files,
    trained_like,
)

MODES = ["fc", "paper", "pfeiffer", "houlsby", "lora", "ia3"]  # every shipped method with a batched model, and fc
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RESIDENT = 12
INPUTS = feature_set(4, seed=31)


def _write(models, directory, index):
    from mmf_pe.tuners.export import save_adapter

    model = models[MODES[index % len(MODES)]]
    trained_like(model, 1000 + index)  # each adapter its own trained tensors
    os.makedirs(directory, exist_ok=True)
    save_adapter(model, directory)


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """64 adapters (all methods) in a served folder, 16 spare versions, and each version's offline scores."""
    from mmf_pe.serve.engine import Engine
    from mmf_pe.serve.layout import save_base
    from mmf_pe.testing.tiny_hmd import write_tokenizer

    root = str(tmp_path_factory.mktemp("many"))
    base = build("fc", seed=0)
    served, spare = os.path.join(root, "served"), os.path.join(root, "spare")
    save_base(base, served, write_tokenizer(os.path.join(root, "tokenizer")), max_seq_length=MAX_SEQ)
    models = {mode: on_base(base, "fc") if mode == "fc" else on_base(base, "pe", f"pe.method={mode}")
              for mode in MODES}
    for index in range(64):
        _write(models, os.path.join(served, f"a{index:02d}"), index)
    for index in range(64, 80):
        _write(models, os.path.join(spare, f"s{index:02d}"), index)
    reference = Engine(served)  # offline: another engine, one request at a time through its own skeletons
    offline = {}
    for directory in [os.path.join(served, n) for n in os.listdir(served) if n.startswith("a")] + \
            [os.path.join(spare, n) for n in os.listdir(spare)]:
        version = reference.read_version(os.path.basename(directory), *read_files(directory), directory)
        offline[version.fingerprint] = [reference.score(version, [t], [torch.from_numpy(f)])[0][0]
                                        for t, f in INPUTS]
    return {"served": served, "spare": spare, "offline": offline}


@pytest.fixture(scope="module")
def lazy_server(many):
    from mmf_pe.serve.app import Settings, create_app

    settings = Settings(many["served"], max_batch=8, max_wait_ms=10, max_queue=512, timeout_s=60, poll_s=3600,
                        admin_token=ADMIN_TOKEN, score_token="", max_adapters_in_memory=RESIDENT)
    with ThreadedServer(create_app(settings)) as running:
        running.adapters = running.server.config.app.state.adapters
        yield running


def _score(server, name, index):
    text, features = INPUTS[index]
    return requests.post(f"{server.url}/v1/score", json={"text": text, "features": features.tolist(),
                                                         "adapter": name}, timeout=60)


def test_concurrent_scoring_while_adapters_change_and_the_lru_evicts(lazy_server, many):
    names = [f"a{i:02d}" for i in range(64)]
    removed, lock, answers = set(), threading.Lock(), []
    assert len(lazy_server.adapters.names()) == 64 and not lazy_server.adapters.versions  # nothing loaded yet

    def client(seed):
        rng = random.Random(seed)
        for _ in range(36):
            with lock:
                name = rng.choice(names)
            index = rng.randrange(len(INPUTS))
            answer = _score(lazy_server, name, index)
            answers.append((name, index, answer.status_code, answer.json()))

    def admin():
        rng = random.Random(5)
        spares = sorted(os.listdir(many["spare"]))
        for step, spare in enumerate(spares):
            config, weights = read_files(os.path.join(many["spare"], spare))
            with lock:
                target = rng.choice(names) if step % 3 else f"new{step:02d}"  # replace, or add a new name
            files = {"config": ("adapter_config.json", config), "weights": ("adapter_model.safetensors", weights)}
            assert requests.post(f"{lazy_server.url}/v1/adapters/{target}", files=files, headers=AUTH,
                                 timeout=60).status_code == 201
            with lock:
                names.append(target) if target not in names else None
                if step % 4 == 1:  # and remove one
                    gone = names.pop(rng.randrange(len(names)))
                    removed.add(gone)
            if step % 4 == 1:
                assert requests.delete(f"{lazy_server.url}/v1/adapters/{gone}", headers=AUTH,
                                       timeout=60).status_code == 200

    with ThreadPoolExecutor(7) as pool:
        jobs = [pool.submit(client, seed) for seed in range(6)] + [pool.submit(admin)]
        for job in jobs:
            job.result()
    assert len(answers) == 6 * 36
    for name, index, status, body in answers:
        if status == 404:
            assert name in removed, body  # only a name removed meanwhile may be unknown
            continue
        assert status == 200, body
        fingerprint = body["adapter"]["fingerprint"]
        assert body["adapter"]["name"] == name and fingerprint in many["offline"], body
        assert abs(body["probability"] - many["offline"][fingerprint][index]) < 1e-5, (name, fingerprint)
    assert len({b["adapter"]["fingerprint"] for _, _, s, b in answers if s == 200}) > RESIDENT  # LRU at work
    adapters = lazy_server.adapters
    assert adapters.evictions > 0 and len(adapters.versions) <= RESIDENT
    assert any(b.get("batch_size", 1) > 1 for _, _, _, b in answers)  # requests for several adapters shared passes
    metrics = requests.get(f"{lazy_server.url}/metrics", timeout=60).text
    assert 'mmf_pe_adapter_residency_total{adapter="a' in metrics and 'event="evictions"' in metrics
    assert "mmf_pe_adapter_resident{" in metrics and "mmf_pe_adapter_load_seconds_count" in metrics


def test_an_adapter_held_by_a_request_is_never_evicted(many):
    from mmf_pe.serve.engine import Engine
    from mmf_pe.serve.residency import LazyAdapters

    adapters = LazyAdapters(Engine(many["served"]), 2)
    adapters.refresh()
    held = adapters.get("a00")
    adapters.hold(held, 1)  # queued
    for name in ("a01", "a02", "a03"):
        assert adapters.get(name) is not None
    assert "a00" in adapters.versions and adapters.versions["a00"] is held and len(adapters.versions) == 2
    adapters.hold(held, -1)  # done: now the least recently used goes first
    adapters.get("a04")
    assert "a00" not in adapters.versions and adapters.evictions == 3


def test_an_adapter_replaced_during_its_lazy_load_is_read_again(many, tmp_path):
    """An upload's version switch landing while a lazy load reads the old files: the load reads again and returns
    the new version (before: the request got a 404 "its files changed while it was loading")."""
    from mmf_pe.serve import layout
    from mmf_pe.serve.engine import Engine
    from mmf_pe.serve.residency import LazyAdapters

    served = str(tmp_path / "served")
    shutil.copytree(os.path.join(many["served"], "base"), os.path.join(served, "base"))
    old, new = [read_files(os.path.join(many["spare"], n)) for n in sorted(os.listdir(many["spare"]))[:2]]
    layout.publish(served, "racing", *old)
    adapters = LazyAdapters(Engine(served), 2)
    adapters.refresh()
    engine, reads, published = adapters.engine, [], []
    real_read_version = engine.read_version

    def replaced_while_reading(*args, **kwargs):
        reads.append(args[0])
        version = real_read_version(*args, **kwargs)
        if len(reads) == 1:
            published.append(layout.publish(served, "racing", *new))  # between the two stamps of the first read
        return version

    engine.read_version = replaced_while_reading
    version = adapters.get("racing")
    assert version is not None and "racing" not in adapters.errors, adapters.errors
    assert len(reads) == 2 and version.fingerprint == published[0] != layout.fingerprint(*old)
    assert abs(engine.score(version, [INPUTS[0][0]], [torch.from_numpy(INPUTS[0][1])])[0][0]
               - many["offline"][version.fingerprint][0]) < 1e-5


def test_an_adapter_whose_files_vanish_before_its_lazy_load_is_a_clear_404(lazy_server, many):
    source = os.path.join(many["spare"], sorted(os.listdir(many["spare"]))[0])
    target = os.path.join(many["served"], "vanishing")
    shutil.copytree(source, target)
    lazy_server.adapters.refresh()  # registered, not loaded
    assert "vanishing" in lazy_server.adapters.names() and "vanishing" not in lazy_server.adapters.versions
    shutil.rmtree(target)
    answer = _score(lazy_server, "vanishing", 0)
    assert answer.status_code == 404 and answer.json()["field"] == "adapter"
    assert "'vanishing'" in answer.json()["error"] and "gone from the served folder" in answer.json()["error"]
    assert many["served"] not in answer.json()["error"]  # no server path in the answer
    assert _score(lazy_server, "a10", 1).status_code in (200, 404)  # the service stays up
    assert requests.get(f"{lazy_server.url}/healthz", timeout=60).status_code == 200
