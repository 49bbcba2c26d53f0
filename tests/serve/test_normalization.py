"""The server normalises captions as the adapter's export records: a disguised caption scores as its plain twin, the
answer shows the text it scored and that normalisation changed it; an export without the key is scored as before."""
import os

import numpy as np
import pytest
import requests

from tests.serve.helpers import FEATURE_DIM, MAX_SEQ, ThreadedServer, build, export_adapter

PLAIN = "they look like hate"
DISGUISED = "th\u0435y l\u043e\u043ek \u200bli\u200dke \u202eh\u0430te\u2066"


@pytest.fixture(scope="module")
def normalising_server(tmp_path_factory):
    from mmf_pe.serve.app import Settings, create_app
    from mmf_pe.serve.layout import save_base
    from mmf_pe.testing.tiny_hmd import write_tokenizer

    root = str(tmp_path_factory.mktemp("serve_norm"))
    base = build("fc", seed=0)
    served = os.path.join(root, "served")
    save_base(base, served, write_tokenizer(os.path.join(root, "tokenizer")), max_seq_length=MAX_SEQ)
    export_adapter(base, os.path.join(served, "new"), "pe", seed=2, text_normalization="nfkc_confusables")
    export_adapter(base, os.path.join(served, "old"), "pe", seed=2)  # made before the key existed
    settings = Settings(served, max_batch=4, max_wait_ms=5, timeout_s=60, poll_s=5, admin_token="", score_token="")
    with ThreadedServer(create_app(settings)) as running:
        yield running


def _score(server, adapter, text):
    features = np.random.default_rng(0).normal(size=(4, FEATURE_DIM)).astype(np.float32).tolist()
    answer = requests.post(f"{server.url}/v1/score", json={"adapter": adapter, "text": text, "features": features},
                           timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_disguised_caption_scores_as_its_plain_twin_and_the_answer_says_so(normalising_server):
    plain, disguised = _score(normalising_server, "new", PLAIN), _score(normalising_server, "new", DISGUISED)
    assert disguised["probability"] == plain["probability"]
    assert disguised["text"] == DISGUISED and disguised["text_source"] == "client"
    assert disguised["text_normalization"] == {"scored": PLAIN, "mode": "nfkc_confusables", "changed": True}
    assert plain["text_normalization"]["changed"] is False


def test_an_export_without_the_key_is_scored_as_before(normalising_server):
    plain, disguised = _score(normalising_server, "old", PLAIN), _score(normalising_server, "old", DISGUISED)
    assert disguised["text_normalization"] == {"scored": DISGUISED, "mode": "none", "changed": False}
    assert disguised["probability"] != plain["probability"]
