"""Bad input gets a 4xx JSON error naming the problem and the service stays up; images go through the detector only
when the adapter's recorded feature provenance matches the server's detector."""
import io
import json

import numpy as np
import pytest
import requests
from PIL import Image

from tests.serve.helpers import FEATURE_DIM, npy_bytes


def png_bytes(size=(64, 48), mode="RGB"):
    buffer = io.BytesIO()
    Image.new(mode, size, color=1 if mode == "1" else (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


GOOD = np.random.default_rng(1).normal(size=(4, FEATURE_DIM)).astype(np.float32)


def bad_inputs():
    """(what, request kwargs, status, words the error must contain)."""
    image = png_bytes()
    return [
        ("non-image", {"files": {"image": ("meme.png", b"this is not an image at all")}}, 415, "not an image"),
        ("0-byte upload", {"files": {"image": ("meme.png", b"")}}, 400, "empty upload"),
        ("truncated image", {"files": {"image": ("meme.png", image[: len(image) // 2])}}, 422, "truncated"),
        ("decompression bomb", {"files": {"image": ("bomb.png", png_bytes((5000, 5000), "1"))}}, 413, "too large"),
        ("oversize upload", {"files": {"image": ("big.png", b"\x89PNG" + b"\x00" * (3 * 2**20))}}, 413,
         "limit"),
        ("1 MB caption", {"data": {"text": "a" * 2**20}, "files": {"features": ("f.npy", npy_bytes(GOOD))}}, 413,
         "text is 1,048,576 characters"),
        ("unknown adapter", {"data": {"adapter": "nope"}, "files": {"features": ("f.npy", npy_bytes(GOOD))}}, 404,
         "unknown adapter 'nope'"),
        ("malformed JSON body", {"data": b'{"text": "x", "features": [[1, 2', "headers": {
            "Content-Type": "application/json"}}, 400, "malformed JSON"),
        ("JSON body not an object", {"json": [1, 2, 3]}, 400, "must be an object"),
        ("malformed JSON features", {"data": {"features": "[[1, 2"}}, 400, "malformed JSON"),
        ("wrong feature width", {"json": {"features": [[0.0] * 7]}}, 422, f"expected (regions, {FEATURE_DIM})"),
        ("NaN features", {"data": json.dumps({"features": [[float("nan")] * FEATURE_DIM]}),
                          "headers": {"Content-Type": "application/json"}}, 422, "NaN or infinity"),
        ("pickled .npy", {"files": {"features": ("f.npy", _object_npy())}}, 422, "not a plain .npy"),
        ("truncated .npy", {"files": {"features": ("f.npy", npy_bytes(GOOD)[:200])}}, 422, "not a readable .npy"),
        ("no input", {"data": {"text": "hello"}}, 422, "no input"),
        ("image and features", {"files": {"image": ("m.png", image), "features": ("f.npy", npy_bytes(GOOD))}}, 422,
         "not both"),
        ("plain text body", {"data": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "content type"),
        ("multipart without boundary", {"data": b"--xx\r\n", "headers": {"Content-Type": "multipart/form-data"}}, 400,
         "malformed multipart"),
    ]


def _object_npy():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def test_bad_inputs_get_4xx_and_the_service_stays_up(server):
    failures = []
    for what, kwargs, status, words in bad_inputs():
        answer = requests.post(f"{server.url}/v1/score", timeout=60, **kwargs)
        body = answer.json()  # always JSON
        if answer.status_code != status or words not in body.get("error", ""):
            failures.append(f"{what}: {answer.status_code} {body}")
    assert not failures, "\n".join(failures)
    assert requests.get(f"{server.url}/healthz", timeout=30).status_code == 200
    good = requests.post(f"{server.url}/v1/score", timeout=60, data={"text": "a cat", "adapter": "fc"},
                         files={"features": ("f.npy", npy_bytes(GOOD))})
    assert good.status_code == 200 and 0.0 <= good.json()["probability"] <= 1.0
    metrics = requests.get(f"{server.url}/metrics", timeout=30).text
    assert 'mmf_pe_requests_total{adapter="-",status="415"}' in metrics


def test_image_scored_with_matching_provenance(server, served):
    with open(served["meme"], "rb") as f:
        data = f.read()
    answer = requests.post(f"{server.url}/v1/score", timeout=120, data={"text": "look at this", "adapter": "pe_img"},
                           files={"image": ("01.png", data)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["features_source"] == "image" and body["timings_ms"]["features"] > 0
    assert 1 <= len(body["regions"]["boxes"]) <= 6 and body["regions"]["image_width"] == 120


@pytest.mark.parametrize("adapter,words", [
    ("pe_other_boxes", "other detector settings than this server's (selection"),
    ("fc", "records no feature provenance"),
])
def test_image_refused_without_matching_provenance(server, served, adapter, words):
    with open(served["meme"], "rb") as f:
        data = f.read()
    answer = requests.post(f"{server.url}/v1/score", timeout=60, data={"adapter": adapter},
                           files={"image": ("01.png", data)})
    assert answer.status_code == 422 and words in answer.json()["error"], answer.text
    assert "precomputed features" in answer.json()["error"]


def test_export_adapter_records_feature_provenance(served, tmp_path, capsys):
    """`mmf_pe export-adapter --features <lmdb>` writes the extraction's settings; without features it says so."""
    import os

    import torch
    from omegaconf import OmegaConf

    from mmf_pe.experiments.export import main
    from mmf_pe.models.visual_bert_family import model_config
    from tests.serve.helpers import TINY, build

    model = build("pe", "pe.method=paper", seed=0)
    config = {"model": "visual_bert_pe", "model_config": {"visual_bert_pe": OmegaConf.to_container(
        model_config("pe", TINY + ["pe.method=paper"]))}}
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": model.state_dict(), "config": config}, run / "best.ckpt")
    lmdb = served["provenance"]["lmdb"]
    assert main([str(run), str(tmp_path / "with"), "--features", lmdb, "--threshold", "0.4"]) == 0
    recorded = json.loads((tmp_path / "with" / "adapter_config.json").read_text())
    provenance = recorded["feature_provenance"]
    assert provenance["detector"] == "torchvision_frcnn" and provenance["selection"]["max_boxes"] == 6
    assert provenance["min_size"] == 64 and provenance["feature_dtype"] == "float32"
    assert recorded["threshold"] == 0.4
    assert main([str(run), str(tmp_path / "without")]) == 0
    assert "precomputed features only" in capsys.readouterr().out
    assert json.loads((tmp_path / "without" / "adapter_config.json").read_text())["feature_provenance"] is None
    assert os.path.isfile(tmp_path / "without" / "adapter_model.safetensors")
