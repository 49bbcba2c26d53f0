"""frozen_vl served: every encoder class (CLIP, BLIP, BLIP-ITM, BLIP-2 with OPT and with T5; CLIP also under its
clip_pe name), FC heads and LoRA / IA3,
exported by the apps from real MMF runs, scored from uploaded images over HTTP beside a VisualBERT base in one folder,
equal to `mmf_pe evaluate` on the same memes."""
import os
import shutil

import pytest
import requests
import torch

from tests.serve.contract_helpers import VL_ADAPTERS, base_of, memes, model_of
from tests.serve.helpers import counted_image_opens


@pytest.mark.parametrize("name", sorted(VL_ADAPTERS))
def test_served_scores_equal_offline(vl_server, vl_served, vl_hmd, name):
    offline = vl_served["offline"][name]
    for meme_id, text, image in memes(vl_hmd):
        response = requests.post(f"{vl_server.url}/v1/score", data={"text": text, "adapter": name},
                                 files={"image": (f"{meme_id}.png", image, "image/png")}, timeout=60)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["features_source"] == "image" and body["adapter"]["name"] == name
        assert abs(body["probability"] - offline[meme_id]) < 1e-5, (name, meme_id)


def test_adapters_list_each_base(vl_server):
    body = requests.get(f"{vl_server.url}/v1/adapters", timeout=60).json()
    adapters = {a["name"]: a for a in body["adapters"]}
    assert set(adapters) == set(VL_ADAPTERS) | {"vb_pe"}, body["errors"]
    assert adapters["vb_pe"]["base"]["model"] == "visual_bert_pe" and not adapters["vb_pe"]["accepts_images"]
    assert adapters["vb_pe"]["accepts_features"]
    for name, (_, encoder, _) in VL_ADAPTERS.items():
        base = adapters[name]["base"]
        assert (base["name"], base["model"], base["encoder"]) == (base_of(name), model_of(name),
                                                                  encoder.split("_t5")[0])
        assert adapters[name]["accepts_images"] and not adapters[name]["accepts_features"]
    fingerprints = {a["base"]["fingerprint"] for a in body["adapters"]}
    bases = {base_of(name) for name in VL_ADAPTERS}
    assert len(fingerprints) == len(bases) + 1
    assert set(body["bases"]["loaded"]) == {"base"} | {f"bases/{b}" for b in bases}
    assert body["bases"]["errors"] == {}


def test_visual_bert_beside_frozen_vl_scores_features(vl_server, vl_served):
    """The VisualBERT adapter of the same folder still scores precomputed features, as the demo's folder does."""
    import numpy as np

    features = np.random.default_rng(0).normal(size=(4, 2048)).astype(np.float32).tolist()
    response = requests.post(f"{vl_server.url}/v1/score", json={"text": "a cat", "adapter": "vb_pe",
                                                                "features": features}, timeout=60)
    assert response.status_code == 200, response.text
    assert 0.0 <= response.json()["probability"] <= 1.0


@pytest.mark.parametrize("case", ["features_to_vl", "image_to_visual_bert", "unreadable_image", "no_input"])
def test_bad_input_is_a_4xx_naming_the_problem(vl_server, vl_hmd, case):
    _, text, image = memes(vl_hmd)[0]
    url = f"{vl_server.url}/v1/score"
    if case == "features_to_vl":
        response = requests.post(url, json={"text": text, "adapter": "clip_fc", "features": [[0.0] * 2048]},
                                 timeout=60)
        expected, field = "takes images, not precomputed features", "features"
    elif case == "image_to_visual_bert":  # its adapter records no detector provenance and the server runs none
        response = requests.post(url, data={"text": text, "adapter": "vb_pe"},
                                 files={"image": ("m.png", image, "image/png")}, timeout=60)
        expected, field = "no detector", None
    elif case == "unreadable_image":
        response = requests.post(url, data={"text": text, "adapter": "blip_lora"},
                                 files={"image": ("m.png", b"\x89PNG\r\n\x1a\n not really", "image/png")}, timeout=60)
        expected, field = "m.png", "image"
    else:
        response = requests.post(url, data={"text": text, "adapter": "blip_itm_fc"}, timeout=60)
        expected, field = "needs an image", "image"
    assert 400 <= response.status_code < 500, response.text
    assert expected in response.json()["error"] and response.json().get("field") == field, response.json()


@pytest.mark.parametrize("text_source", ["client", "ocr"])
def test_a_request_decodes_its_image_once(vl_server, vl_hmd, monkeypatch, text_source):
    """The server's checks, OCR (no client text) and the encoder's image processor share one decode of the upload
    (before: two, three with OCR); the score is unchanged."""
    if text_source == "ocr" and shutil.which("tesseract") is None:
        pytest.skip("needs the Debian packages tesseract-ocr tesseract-ocr-eng")
    meme_id, text, image = memes(vl_hmd)[0]
    opened = counted_image_opens(monkeypatch)
    data = {"adapter": "clip_fc"} | ({"text": text} if text_source == "client" else {})
    response = requests.post(f"{vl_server.url}/v1/score", data=data,
                             files={"image": (f"{meme_id}.png", image, "image/png")}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["text_source"] == text_source
    assert len(opened) == 1, opened


def test_an_image_encodes_once_for_several_heads(vl_served, vl_hmd):
    """The in-memory embedding cache: a re-posted meme, and a second FC head on the same base, hit it; IA3 / LoRA do
    not use it (the encoder changes per adapter); the scores stay those of the uncached model."""
    from mmf_pe.serve.engine import Engine

    engine = Engine(vl_served["served"], embedding_cache_mb=1)
    clip = engine.bases["bases/clip"]
    fc = engine.read_folder_version("clip_fc")
    _, text, image = memes(vl_hmd)[0]
    first, _ = engine.score(fc, [text], [{"image": image}])
    stats = clip.cache.describe()
    assert (stats["hits"], stats["misses"]) == (0, 2)  # image and text encoded once
    again, _ = engine.score(fc, [text], [{"image": image}])
    assert clip.cache.describe()["hits"] == 2 and again == first
    assert abs(first[0] - vl_served["offline"]["clip_fc"][memes(vl_hmd)[0][0]]) < 1e-5
    other_head = another_fc_head(os.path.join(vl_served["served"], "clip_fc"))
    second = engine.read_version("clip_fc_2", *other_head, "clip_fc_2")
    assert second.kind is fc.kind  # one skeleton, two heads
    other, _ = engine.score(second, [text], [{"image": image}])
    assert clip.cache.describe()["hits"] == 4 and clip.cache.describe()["misses"] == 2 and other != first
    ia3 = engine.read_folder_version("clip_ia3")
    engine.score(ia3, [text], [{"image": image}])
    assert clip.cache.describe()["hits"] == 4  # the IA3 kind encodes through its own (adapted) encoder


def another_fc_head(adapter_dir, seed=3):
    """(config bytes, weights bytes) of a second FC head: the adapter's tensors moved by noise."""
    from safetensors.torch import load_file, save

    from tests.serve.helpers import read_files

    config, _ = read_files(adapter_dir)
    generator = torch.Generator().manual_seed(seed)
    tensors = {k: v + torch.randn(v.shape, generator=generator) for k, v in
               load_file(os.path.join(adapter_dir, "adapter_model.safetensors")).items()}
    return config, save(tensors)


def test_the_memory_cache_is_bounded():
    from mmf_pe.models.frozen_vl.memory_cache import MemoryEmbeddingCache

    cache = MemoryEmbeddingCache(max_bytes=3 * (16 * 4 + 64))
    view = cache.view({"embedding": "pooled"})
    calls = []

    def compute(indices):
        calls.append(list(indices))
        return torch.arange(16 * len(indices), dtype=torch.float32).reshape(len(indices), 16)

    view.lookup([f"k{i}" for i in range(5)], compute, "cpu")
    assert len(cache.entries) == 3 and cache.entries.currsize <= cache.max_bytes
    view.lookup(["k4"], compute, "cpu")  # still there (most recent)
    view.lookup(["k0"], compute, "cpu")  # evicted: computed again
    assert calls[1:] == [[0]]
    other = cache.view({"embedding": "projected"})  # other features: never the same entry
    other.lookup(["k4"], compute, "cpu")
    assert calls[2:] == [[0]]


def test_a_base_folder_with_a_missing_or_foreign_file(tmp_path, vl_served, vl_hmd):
    """A broken base is reported and its adapters refused with the reason (HTTP 422 on upload, 404 naming it on
    scoring); the folder's other bases serve."""
    import shutil

    from fastapi.testclient import TestClient

    from mmf_pe.serve.app import Settings, create_app
    from tests.serve.helpers import ADMIN_TOKEN, read_files

    source = vl_served["served"]
    folder = tmp_path / "served"
    shutil.copytree(os.path.join(source, "base"), folder / "base")
    for encoder in ("clip", "blip", "blip_itm"):
        shutil.copytree(os.path.join(source, "bases", encoder), folder / "bases" / encoder)
    for name in ("clip_fc", "blip_lora", "blip_itm_fc"):
        shutil.copytree(os.path.join(source, name), folder / name)
    os.remove(folder / "bases" / "clip" / "encoder" / "config.json")
    (folder / "bases" / "blip" / "encoder" / "pytorch_model.bin").write_bytes(b"not ours")
    app = create_app(Settings(str(folder), poll_s=60, admin_token=ADMIN_TOKEN, score_token=""))
    with TestClient(app) as client:
        listed = client.get("/v1/adapters").json()
        assert [a["name"] for a in listed["adapters"]] == ["blip_itm_fc"]
        errors = listed["bases"]["errors"]
        assert "encoder/config.json: missing" in errors["bases/clip"]
        assert "pytorch_model.bin: a foreign file" in errors["bases/blip"]
        assert "its base is not loaded" in listed["errors"]["clip_fc"]
        _, text, image = memes(vl_hmd)[0]
        scored = client.post("/v1/score", data={"text": text, "adapter": "clip_fc"},
                             files={"image": ("m.png", image, "image/png")})
        assert scored.status_code == 404 and "config.json: missing" in scored.json()["error"]
        config, weights = read_files(os.path.join(source, "blip_lora"))
        uploaded = client.post("/v1/adapters/blip_again", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                               files={"config": ("c.json", config), "weights": ("w.safetensors", weights)})
        assert uploaded.status_code == 422 and "pytorch_model.bin: a foreign file" in uploaded.json()["error"]
        reserved = client.post("/v1/adapters/bases", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                               files={"config": ("c.json", config), "weights": ("w.safetensors", weights)})
        assert reserved.status_code == 422 and "'bases'" in reserved.json()["error"]  # the bases' folder stays



def test_the_device_option_reaches_the_engine(vl_served):
    """`--device` and `--embedding-cache-mb` go from the command line to the engine (and the detector's options)."""
    from mmf_pe.serve.cli import build_app, options_from_args, parser

    args = parser().parse_args([vl_served["served"], "--device", "cpu", "--embedding-cache-mb", "2", "--no-detector"])
    options = options_from_args(args, args.folder)
    assert options["device"] == "cpu" and options["detector_args"]["device"] == "cpu"
    engine = build_app(options).state.engine
    assert engine.device == torch.device("cpu") and engine.bases["bases/clip"].cache.max_bytes == 2 * 2**20
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is visible"):
            build_app(dict(options, device="cuda"))
    with pytest.raises(ValueError, match="use cpu, cuda or cuda:N"):
        build_app(dict(options, device="tpu"))


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_the_whole_engine_runs_on_cuda(vl_served, vl_hmd):
    """Base, skeletons, adapters and batches on the GPU; scores as offline (fp32, TF32 off)."""
    from mmf_pe.serve.engine import Engine

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    engine = Engine(vl_served["served"], device="cuda")
    for name in sorted(VL_ADAPTERS):
        version = engine.read_folder_version(name)
        assert all(p.is_cuda for p in version.kind.model.parameters()) and version.base.device.type == "cuda"
        batch = memes(vl_hmd)
        scores, _ = engine.score(version, [t for _, t, _ in batch], [{"image": i} for _, _, i in batch])
        for (meme_id, _, _), score in zip(batch, scores):
            assert abs(score - vl_served["offline"][name][meme_id]) < 1e-4, (name, meme_id)
