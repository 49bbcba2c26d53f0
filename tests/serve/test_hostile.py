"""Hostile requests against the real server (uvicorn on 127.0.0.1): each is a 4xx JSON error naming the field, never
a 500; admin uploads are data (never interpolated, bounded, finite), leave nothing behind when refused, and race
safely; unauthenticated answers show no server path."""
import concurrent.futures
import io
import json
import logging
import os
import re
import time

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from tests.serve.helpers import ADMIN_TOKEN, FEATURE_DIM, feature_set, npy_bytes, read_files

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DEEP = 100_000


def _json_post(url, raw):
    return requests.post(f"{url}/v1/score", data=raw, headers={"Content-Type": "application/json"}, timeout=60)


def _png():
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def score_cases():
    """(what, request kwargs, status, field)."""
    row = ", ".join(["0.5"] * (FEATURE_DIM - 1))
    huge = "9" * 5000
    big = "9" * 400  # under Python's 4300-digit limit, beyond any float
    return [
        ("body nested 100,000 deep", {"data": b'{"text": "x", "features": ' + b"[" * DEEP + b"]" * DEEP + b"}",
                                      "headers": {"Content-Type": "application/json"}}, 400, "features"),
        ("features string nested 100,000 deep", {"data": {"features": "[" * DEEP + "]" * DEEP}}, 400, "features"),
        ("5,000-digit integer in the body", {"data": f'{{"features": [[{huge}, {row}]]}}',
                                             "headers": {"Content-Type": "application/json"}}, 400, "features"),
        ("5,000-digit integer in the features string", {"data": {"features": f"[[{huge}, {row}]]"}}, 400,
         "features"),
        ("400-digit integer (beyond float)", {"data": f'{{"features": [[{big}, {row}]]}}',
                                              "headers": {"Content-Type": "application/json"}}, 400, "features"),
        ("1e30 in float32 (finite, the model overflows)",
         {"files": {"features": ("f.npy", npy_bytes(np.full((3, FEATURE_DIM), 1e30, np.float32)))},
          "data": {"adapter": "fc"}}, 422, "features"),
        ("1e300 in float64 (inf once cast)",
         {"files": {"features": ("f.npy", npy_bytes(np.full((3, FEATURE_DIM), 1e300, np.float64)))},
          "data": {"adapter": "fc"}}, 422, "features"),
        ("NUL byte in the image's file name", {"files": {"image": ("a\x00.png", _png())}}, 400, "image"),
        ("NUL byte in the features' file name",
         {"files": {"features": ("f\x00.npy", npy_bytes(np.zeros((2, FEATURE_DIM), np.float32)))}}, 400, "features"),
    ]


@pytest.mark.parametrize("what,kwargs,status,field", score_cases(), ids=[c[0] for c in score_cases()])
def test_hostile_score_requests_get_4xx_naming_the_field(server, what, kwargs, status, field):
    answer = requests.post(f"{server.url}/v1/score", timeout=60, **kwargs)
    body = answer.json()
    assert answer.status_code == status and body["field"] == field, (what, answer.status_code, body)
    assert body["error"] and "internal error" not in body["error"]


def _upload(server, name, config, weights):
    config_bytes = config if isinstance(config, bytes) else json.dumps(config).encode()
    return requests.post(f"{server.url}/v1/adapters/{name}", headers=AUTH, timeout=120,
                         files={"config": ("adapter_config.json", config_bytes),
                                "weights": ("adapter_model.safetensors", weights)})


@pytest.fixture(scope="module")
def good(served):
    """pe_v2's files: (config dict, weights bytes); also LoRA's, for the rank cases."""
    config, weights = read_files(os.path.join(served["spare"], "pe_v2"))
    lora = read_files(os.path.join(served["served"], "lora"))
    return json.loads(config), weights, json.loads(lora[0]), lora[1]


def _with(config, **changes):
    out = json.loads(json.dumps(config))
    for dotted, value in changes.items():
        node, *path = dotted.split("__")
        target = out
        for key in [node, *path][:-1]:
            target = target[key]
        target[[node, *path][-1]] = value
    return out


def upload_cases(good):
    config, weights, lora, lora_weights = good
    deep = b'{"format": "mmf_pe.adapter/1", "pe": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    huge = re.sub(r'"reduction_factor": [0-9.]+', '"reduction_factor": ' + "9" * 5000, json.dumps(config)).encode()
    return [
        ("pe not a mapping", _with(config, pe="paper"), weights, "config.pe"),
        ("pe a list", _with(config, pe=[1, 2]), weights, "config.pe"),
        ("architecture not a mapping", _with(config, architecture=[1, 2]), weights, "config.architecture"),
        ("unknown pe.method", _with(config, pe__method="nope"), weights, "config.pe.method"),
        ("pe.method not a string", _with(config, pe__method=7), weights, "config.pe.method"),
        ("rank over the hidden size", _with(lora, pe__rank=20000), lora_weights, "config.pe.rank"),
        ("rank not an integer", _with(lora, pe__rank=8.5), lora_weights, "config.pe.rank"),
        ("target_modules no regex", _with(lora, pe__target_modules="(query"), lora_weights, "config"),
        ("target_modules matching nothing", _with(lora, pe__target_modules=["nope.nothing"]), lora_weights,
         "config"),
        ("reduction factor under 1", _with(config, pe__reduction_factor=0.001), weights,
         "config.pe.reduction_factor"),
        ("nested 100,000 deep", deep, weights, "config.pe"),
        ("5,000-digit integer", huge, weights, "config.pe.reduction_factor"),
        ("threshold true", _with(config, threshold=True), weights, "config.threshold"),
        ("base_fingerprint a string", _with(config, base_fingerprint="abc"), weights, "config.base_fingerprint"),
        ("config of 5 MB", _with(config, source="x" * 5 * 2**20), weights, "config"),
    ]


def test_hostile_uploads_get_422_naming_the_field_and_leave_no_skeleton(server, good):
    engine = server.server.config.app.state.engine
    kinds = set(engine.kinds)
    failures = []
    for what, config, weights, field in upload_cases(good):
        answer = _upload(server, "hostile", config, weights)
        body = answer.json()
        if answer.status_code != 422 or body.get("field") != field:
            failures.append(f"{what}: {answer.status_code} {body}")
    assert not failures, "\n".join(failures)
    assert set(engine.kinds) == kinds  # no skeleton of a refused upload stays cached
    assert not os.path.lexists(os.path.join(server.served["served"], "hostile"))


def test_a_refused_upload_of_a_new_kind_caches_no_skeleton(server, good):
    """A valid config of a kind not served yet (IA3) whose weights do not fit: refused, and its model is not kept."""
    config, weights, _, _ = good
    engine = server.server.config.app.state.engine
    kinds = set(engine.kinds)
    answer = _upload(server, "ia3_misfit", _with(config, pe={"method": "ia3"}), weights)
    assert answer.status_code == 422 and "does not fit" in answer.json()["error"], answer.text
    assert set(engine.kinds) == kinds


def test_uploaded_configs_are_never_interpolated(server, good, monkeypatch, caplog):
    config, weights, _, _ = good
    secret = "s3cret-from-the-server-env"
    monkeypatch.setenv("MMF_PE_TEST_SECRET", secret)
    caplog.set_level(logging.DEBUG)
    for changed in (_with(config, pe__method="${oc.env:MMF_PE_TEST_SECRET}"),
                    _with(config, pe__non_linearity="${oc.env:MMF_PE_TEST_SECRET}"),
                    _with(config, architecture__hidden_act="${oc.env:MMF_PE_TEST_SECRET}")):
        answer = _upload(server, "interp", changed, weights)
        assert answer.status_code == 422 and "interpolation" in answer.json()["error"], answer.text
        assert secret not in answer.text
    assert secret not in caplog.text


def test_non_finite_weights_are_refused_at_upload(server, good):
    from safetensors.torch import load, save

    config, weights, _, _ = good
    tensors = load(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    answer = _upload(server, "nan_weights", config, save(tensors))
    assert answer.status_code == 422 and answer.json()["field"] == "weights", answer.text
    assert name in answer.json()["error"] and "NaN" in answer.json()["error"]
    tensors[name].view(-1)[0] = float("inf")
    assert _upload(server, "nan_weights", config, save(tensors)).status_code == 422
    assert not os.path.lexists(os.path.join(server.served["served"], "nan_weights"))


@pytest.mark.parametrize("name", ["fc%0A", "index.json", "base", "pe.tmp"])
def test_names_match_in_full_and_reserved_names_are_refused(server, good, name):
    config, weights, _, _ = good
    answer = _upload(server, name, config, weights)
    assert answer.status_code == 422 and answer.json()["field"] == "adapter", answer.text
    assert not any("\n" in entry for entry in os.listdir(server.served["served"]))
    assert not os.path.isfile(os.path.join(server.served["served"], "index.json"))


def test_concurrent_identical_uploads_all_succeed(server, good):
    config, weights, _, _ = good
    config = _with(config, threshold=0.45)  # a version no other test published
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: _upload(server, "twin", config, weights), range(24)))
    assert [a.status_code for a in answers] == [201] * 24, [a.text for a in answers if a.status_code != 201]
    assert len({a.json()["fingerprint"] for a in answers}) == 1
    assert requests.delete(f"{server.url}/v1/adapters/twin", headers=AUTH, timeout=60).status_code == 200


def test_public_answers_reveal_no_server_path(server):
    served = server.served
    broken = os.path.join(served["served"], "broken")
    os.makedirs(broken)
    with open(os.path.join(broken, "adapter_config.json"), "w") as f:
        f.write("{ not json")
    with open(os.path.join(broken, "adapter_model.safetensors"), "wb") as f:
        f.write(b"\x00" * 16)
    try:
        deadline = time.time() + 30
        while "broken" not in requests.get(f"{server.url}/readyz", timeout=30).json()["errors"]:
            assert time.time() < deadline, "the broken adapter's error never showed"
            time.sleep(0.2)
        for path in ("/readyz", "/v1/adapters"):
            text = requests.get(f"{server.url}{path}", timeout=30).text
            assert served["root"] not in text and os.path.realpath(served["root"]) not in text, (path, text[:2000])
            assert "broken/adapter_config.json" in text or path == "/v1/adapters" and "adapter_config.json" in text
        listing = requests.get(f"{server.url}/v1/adapters", timeout=30).json()
        pe_img = next(a for a in listing["adapters"] if a["name"] == "pe_img")
        assert pe_img["feature_provenance"]["lmdb"] == "features.lmdb"  # the name, not where it lay
    finally:
        import shutil

        shutil.rmtree(broken)


def test_score_still_answers_after_the_hostile_requests(server):
    text, features = feature_set(1)[0]
    answer = requests.post(f"{server.url}/v1/score", data={"adapter": "fc", "text": text},
                           files={"features": ("f.npy", npy_bytes(features))}, timeout=60)
    assert answer.status_code == 200 and 0.0 <= answer.json()["probability"] <= 1.0
    assert torch.isfinite(torch.tensor(answer.json()["probability"]))


def _plain_adapter(path, age_s=3600):
    os.makedirs(path)
    for name, data in (("adapter_config.json", b"{}"), ("adapter_model.safetensors", b"w")):
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
    old = time.time() - age_s
    os.utime(path, (old, old))


def test_replaced_or_deleted_folders_stay_for_the_grace_period(tmp_path):
    """A plain export folder (not a link) replaced or deleted, and an old version unlinked, all stay until their
    grace period (from when they stopped being served) is over; then they go."""
    from mmf_pe.serve import layout

    folder = tmp_path / "served"
    _plain_adapter(str(folder / "pe"))
    _plain_adapter(str(folder / "fc"))
    layout.publish(str(folder), "pe", b'{"v": 2}', b"weights-2")
    versions = folder / layout.VERSIONS_DIR
    assert [n for n in os.listdir(versions) if n.startswith("pe.replaced.")], os.listdir(versions)
    layout.unpublish(str(folder), "fc")
    assert [n for n in os.listdir(versions) if n.startswith("fc.removed.")], os.listdir(versions)
    current = os.path.realpath(folder / "pe")
    old = time.time() - 3600
    os.utime(current, (old, old))  # published an hour ago
    layout.publish(str(folder), "pe", b'{"v": 3}', b"weights-3")
    assert os.path.isdir(current)  # just unlinked: readers may still be in it
    layout.unpublish(str(folder), "pe")
    time.sleep(0.05)
    layout.collect_garbage(str(folder), grace_s=0.01)
    assert os.listdir(versions) == []


def test_publish_survives_an_identical_version_written_meanwhile(tmp_path, monkeypatch):
    """Two replicas / requests write the same version at once: the second rename finds it there (ENOTEMPTY)."""
    from mmf_pe.serve import layout

    folder = tmp_path / "served"
    folder.mkdir()
    fingerprint = layout.publish(str(folder), "pe", b'{"v": 1}', b"weights-1")
    target = str(folder / layout.VERSIONS_DIR / f"pe.{fingerprint}")
    real_isdir, calls = os.path.isdir, []

    def isdir(path):  # the first look says "not written yet", as it did for the concurrent writer
        if str(path) == target and not calls:
            calls.append(path)
            return False
        return real_isdir(path)

    monkeypatch.setattr(os.path, "isdir", isdir)
    assert layout.publish(str(folder), "pe", b'{"v": 1}', b"weights-1") == fingerprint
    assert calls and (folder / "pe" / "adapter_model.safetensors").read_bytes() == b"weights-1"
    assert not [n for n in os.listdir(folder / layout.VERSIONS_DIR) if n.endswith(".tmp")]


@pytest.mark.parametrize("name", ["fc\n", "index.json", "base", "pe.link"])
def test_check_name_is_a_full_match(name):
    from mmf_pe.serve import layout

    with pytest.raises(ValueError, match="adapter name"):
        layout.check_name(name)
