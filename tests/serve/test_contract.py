"""The model contract is the apps' only view of a model: a toy third family, registered here, is exported by
`mmf_pe export-base` / `export-adapter` from an MMF-style checkpoint and scored by the server, no app changed."""
import json
import os

import pytest
import torch

from mmf_pe.models.contract import Family, RequestError, ServedBase, register_family, unregister_family, write_manifest

FEATURE_DIM = 6
MAX_CHARS = 16


class BagModel(torch.nn.Module):
    """Characters' mean embedding (frozen: the base) + mean region feature -> a trained linear head."""

    MODEL_NAME = "toy_bag"

    def __init__(self, config):
        super().__init__()
        self.config, self.training_mode = dict(config), config["training_mode"]
        self.embedding = torch.nn.Embedding(128, 4)
        self.head = torch.nn.Linear(4 + FEATURE_DIM, 2)
        self.embedding.weight.requires_grad_(False)

    def forward(self, batch):
        text = (self.embedding(batch["ids"]) * batch["mask"][..., None]).sum(1) / batch["mask"].sum(1, keepdim=True)
        return {"scores": self.head(torch.cat([text, batch["features"]], dim=-1))}


def encode(text):
    ids = [ord(c) % 128 for c in text[:MAX_CHARS]] or [0]
    return torch.tensor(ids)


class ToyFamily(Family):
    names = ("toy_bag",)

    def build(self, run_config):
        return BagModel(run_config["model_config"]["toy_bag"])

    def export_base(self, model, run_config, out_dir, default_adapter=None, **options):
        from safetensors.torch import save_file

        os.makedirs(out_dir, exist_ok=True)
        save_file({"embedding.weight": model.embedding.weight.detach()}, os.path.join(out_dir, "toy.safetensors"))
        config = {"format": "mmf_pe.base/1", "model": "toy_bag", "model_config": model.config,
                  "default_adapter": default_adapter, "files": write_manifest(out_dir)}
        with open(os.path.join(out_dir, "base_config.json"), "w") as f:
            json.dump(config, f)
        return out_dir

    def open_base(self, directory, config, device="cpu", embedding_cache_bytes=0):
        return ToyBase(self, directory, config, device)


class ToyBase(ServedBase):
    takes_features = True
    feature_dim = FEATURE_DIM

    def load_tensors(self):
        from safetensors.torch import load_file

        return load_file(os.path.join(self.directory, "toy.safetensors"))

    def kind_key(self, adapter_config, tensors, where):
        return adapter_config["training_mode"]

    def build_model(self, adapter_config, tensors, where):
        return BagModel(dict(self.config["model_config"], training_mode=adapter_config["training_mode"]))

    def prepare(self, text, image=None, features=None):
        if features is None:
            raise RequestError("toy_bag needs features", "features")
        return encode(text), features.mean(0)

    def collate(self, texts, items):
        ids = torch.nn.utils.rnn.pad_sequence([i for i, _ in items], batch_first=True)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(i)) for i, _ in items], batch_first=True)
        return {"ids": ids, "mask": mask, "features": torch.stack([f for _, f in items])}


@pytest.fixture
def toy_family():
    register_family(ToyFamily())
    yield
    unregister_family("toy_bag")


def test_a_toy_family_exports_and_serves_through_the_apps(tmp_path, toy_family):
    from fastapi.testclient import TestClient

    from mmf_pe.experiments.export import main as export_adapter
    from mmf_pe.serve.app import Settings, create_app
    from mmf_pe.serve.base_export import main as export_base

    torch.manual_seed(0)
    model = BagModel({"training_mode": "fc"})
    run = tmp_path / "run"
    run.mkdir()
    config = {"model": "toy_bag", "model_config": {"toy_bag": {"training_mode": "fc"}}}
    torch.save({"model": model.state_dict(), "config": config}, run / "best.ckpt")  # an MMF checkpoint's layout
    folder = tmp_path / "served"
    assert export_base([str(run), str(folder)]) == 0
    assert export_adapter([str(run), str(folder / "toy")]) == 0
    exported = json.loads((folder / "toy" / "adapter_config.json").read_text())
    assert exported["model"] == "toy_bag" and set(exported["parameters"]) == {"head.weight", "head.bias"}

    features = torch.randn(3, FEATURE_DIM)
    with torch.no_grad():
        batch = {"ids": encode("a toy meme")[None], "mask": torch.ones(1, len("a toy meme")),
                 "features": features.mean(0)[None]}
        offline = torch.softmax(model(batch)["scores"], -1)[0, 1].item()
    with TestClient(create_app(Settings(str(folder), poll_s=60, admin_token="", score_token=""))) as client:
        listed = client.get("/v1/adapters").json()["adapters"]
        assert [(a["name"], a["model"], a["accepts_images"]) for a in listed] == [("toy", "toy_bag", False)]
        scored = client.post("/v1/score", json={"text": "a toy meme", "features": features.tolist()})
        assert scored.status_code == 200, scored.text
        assert abs(scored.json()["probability"] - offline) < 1e-6
        image = client.post("/v1/score", data={"text": "x"}, files={"image": ("m.png", b"\x89PNG", "image/png")})
        assert image.status_code == 422 and "takes no images" in image.json()["error"]
        assert image.json()["field"] == "image"
