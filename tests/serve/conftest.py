"""One served folder and one real uvicorn server (thread, 127.0.0.1, free port) shared by this folder's tests."""
import os

import pytest

from tests.serve.helpers import ADMIN_TOKEN, ThreadedServer, export_adapter, make_folder

DETECTOR = {"detector": "torchvision_frcnn", "allow_random_weights": True, "num_boxes": 6, "min_size": 64,
            "max_size": 96}


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """The folder + a PE adapter `pe_img` whose provenance is that of a real `mmf_pe extract` run."""
    from mmf_pe.demo.memes import Scene, draw_meme
    from mmf_pe.extraction import extract_features
    from mmf_pe.tuners.provenance import read_feature_provenance

    paths = make_folder(str(tmp_path_factory.mktemp("serve")))
    images = os.path.join(paths["root"], "memes")
    os.makedirs(images)
    meme = draw_meme(Scene(background=(236, 233, 222), horizon=0.7, shape="circle", colour="red", cx=0.5, cy=0.45,
                           radius=0.22, prop_colour=(120, 84, 50), prop_xy=(0.12, 0.6), caption_top=True),
                     "look at this lovely family", size=120)  # a synthetic meme as the demo draws them
    meme.crop((0, 0, 120, 80)).save(os.path.join(images, "01.png"))  # 120 x 80: not square
    lmdb = os.path.join(paths["root"], "features.lmdb")
    extract_features(images, lmdb, detector="torchvision_frcnn", allow_random_weights=True, num_boxes=6,
                     min_size=64, max_size=96, progress=False, num_workers=0, log=lambda m: None)
    paths["provenance"] = read_feature_provenance(lmdb)
    paths["meme"] = os.path.join(images, "01.png")
    export_adapter(paths["base"], os.path.join(paths["served"], "pe_img"), "pe", seed=7,
                   provenance=paths["provenance"])
    other = dict(paths["provenance"], selection=dict(paths["provenance"]["selection"], max_boxes=50, min_boxes=50))
    export_adapter(paths["base"], os.path.join(paths["served"], "pe_other_boxes"), "pe", seed=8, provenance=other)
    return paths


@pytest.fixture(scope="session")
def featurizer():
    from mmf_pe.serve.features import Featurizer

    return Featurizer(**DETECTOR)


@pytest.fixture(scope="session")
def server(served, featurizer):
    from mmf_pe.serve.app import Settings, create_app

    settings = Settings(served["served"], max_batch=8, max_wait_ms=20, max_queue=64, timeout_s=60,
                        max_upload_bytes=2 * 2**20, max_pixels=4_000_000, poll_s=0.2, admin_token=ADMIN_TOKEN,
                        score_token="")
    with ThreadedServer(create_app(settings, featurizer=featurizer)) as running:
        running.served = served
        yield running


@pytest.fixture(scope="session")
def vl_served(tmp_path_factory, vl_hmd):
    """One folder, several bases: tiny VisualBERT in base/, a frozen_vl base per encoder class in bases/, adapters
    exported from real 2-update MMF runs, and their `mmf_pe evaluate` scores (tests/serve/contract_helpers.py)."""
    from tests.serve.contract_helpers import make_multi_base_folder

    return make_multi_base_folder(str(tmp_path_factory.mktemp("vl_served")), vl_hmd)


@pytest.fixture(scope="session")
def vl_server(vl_served):
    """A real uvicorn server over that folder (no region detector: the frozen_vl bases read images themselves)."""
    from mmf_pe.serve.app import Settings, create_app

    settings = Settings(vl_served["served"], max_batch=8, max_wait_ms=20, max_queue=64, timeout_s=60,
                        max_upload_bytes=2 * 2**20, max_pixels=4_000_000, poll_s=0.2, admin_token=ADMIN_TOKEN,
                        score_token="")
    with ThreadedServer(create_app(settings)) as running:
        yield running
