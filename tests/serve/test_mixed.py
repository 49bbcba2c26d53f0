"""Mixed-adapter batches (issue 25): rows of one forward pass carry different adapters, of one method or of several.

Iterates over the PE method registry (plus fc heads): a method with a batched implementation scores a mixed batch
(of its own adapters, and beside every other batched method's) exactly as one request at a time; one without (the
test-only `scale`) is refused by name and keeps one-adapter batches."""
import os

import numpy as np
import pytest
import torch

import tests.tuners.scale_method  # noqa: F401  (registers pe.method=scale, as tests/tuners/conftest.py does)
from mmf_pe.tuners import PE_METHODS
from mmf_pe.tuners.batched import BATCHED
from tests.serve.helpers import MAX_SEQ, build, feature_set, on_base, trained_like

MODES = ["fc"] + sorted(PE_METHODS)
SERVED = [mode for mode in MODES if mode in BATCHED]  # the others are refused by name before serving
SEEDS = (21, 22, 23)


TOP = ("paper", "lora", "ia3")  # also exported with the method in the top layer only (`top_<method>_<seed>`)


def _pe_setting(method, key, value):
    """A method's `pe` setting as a command-line override (one place for the `pe:` node's layout)."""
    return f"pe.{method}.{key}={value}"


def _export(base, out_dir, mode, seed, *extra):
    from mmf_pe.tuners.export import save_adapter

    overrides = ("fc",) if mode == "fc" else ("pe", f"pe.method={mode}", _pe_setting(mode, "reduction_factor", 4)) \
        if "reduction_factor" in PE_METHODS[mode].defaults() else ("pe", f"pe.method={mode}")
    model = trained_like(on_base(base, *overrides, *extra), seed)
    os.makedirs(out_dir, exist_ok=True)
    save_adapter(model, out_dir)


@pytest.fixture(scope="module")
def mixed_engine(tmp_path_factory):
    """A served folder with three adapters of every registered method (and of fc) over one tiny base."""
    from mmf_pe.serve.engine import Engine
    from mmf_pe.serve.layout import save_base
    from mmf_pe.testing.tiny_hmd import write_tokenizer

    root = str(tmp_path_factory.mktemp("mixed"))
    base = build("fc", seed=0)
    served = os.path.join(root, "served")
    save_base(base, served, write_tokenizer(os.path.join(root, "tokenizer")), max_seq_length=MAX_SEQ)
    for mode in SERVED:
        for seed in SEEDS:
            _export(base, os.path.join(served, f"{mode}_{seed}"), mode, seed)
    for mode in TOP:
        for seed in SEEDS[:2]:
            _export(base, os.path.join(served, f"top_{mode}_{seed}"), mode, seed, _pe_setting(mode, "layers", "[1]"))
    engine = Engine(served)
    versions = {mode: [engine.read_folder_version(f"{mode}_{seed}") for seed in SEEDS] for mode in SERVED}
    return engine, versions


@pytest.mark.parametrize("mode", MODES)
def test_a_mixed_batch_scores_each_row_as_its_adapter_alone(mixed_engine, mode):
    if mode not in BATCHED:  # e.g. the test-only `scale`: refused by name, its adapters take one-adapter batches
        from mmf_pe.tuners.batched import NotBatchable, batched_model

        model = on_base(build("fc"), "pe", f"pe.method={mode}")
        slots = {n: p for n, p in model.named_parameters() if p.requires_grad}
        with pytest.raises(NotBatchable, match=f"pe.method {mode!r} has no batched implementation"):
            batched_model(model, slots, mode)
        return
    engine, versions = mixed_engine
    kind = versions[mode][0].kind
    assert all(v.kind is kind for v in versions[mode])  # one skeleton: they may share a batch
    pairs = feature_set(7, seed=5)
    texts = [t for t, _ in pairs]
    inputs = [torch.from_numpy(f) for _, f in pairs]
    rows = [versions[mode][i % len(SEEDS)] for i in (0, 1, 2, 0, 2, 1, 1)]
    assert engine.batch_group(rows[0]) is kind.base is engine.batch_group(rows[1])
    switches = kind.switches
    mixed, switched = engine.score_batch(rows, texts, inputs)
    assert switched is False and kind.switches == switches  # no adapter copied into the shared skeleton
    alone = [engine.score(v, [t], [x])[0][0] for v, t, x in zip(rows, texts, inputs)]
    np.testing.assert_allclose(mixed, alone, rtol=0, atol=1e-5)
    same, _ = engine.score_batch([rows[0]] * 3, texts[:3], inputs[:3])  # one adapter: the plain-linear path
    np.testing.assert_allclose(same, [engine.score(rows[0], [t], [x])[0][0] for t, x in zip(texts, inputs)][:3],
                               rtol=0, atol=1e-5)
    # the adapters differ, so a row scored with another row's adapter would be caught
    assert max(abs(a - b) for a, b in zip(mixed, [engine.score(rows[0], [t], [x])[0][0]
                                                  for t, x in zip(texts, inputs)])) > 1e-4


def test_every_method_in_one_batch_scores_each_row_as_its_adapter_alone(mixed_engine):
    """One forward pass over adapters of every batched method (and FC heads) of one base: what the methods share
    (embeddings, the frozen attention and FFN matmuls around their modules, the classifier) runs once; each method's
    own modules run on its rows."""
    from mmf_pe.serve import mixed
    from mmf_pe.tuners.composite import PartSwitch, switched_paths

    engine, versions = mixed_engine
    assert len({engine.batch_group(versions[mode][0]) for mode in SERVED}) == 1  # one base: one group
    order = [(mode, seed) for seed in range(len(SEEDS)) for mode in SERVED]
    order = order[1::2] + order[::2]  # interleaved: no method's rows contiguous
    rows = [versions[mode][seed] for mode, seed in order]
    pairs = feature_set(len(rows), seed=6)
    texts, inputs = [t for t, _ in pairs], [torch.from_numpy(f) for _, f in pairs]
    scores, switched = engine.score_batch(rows, texts, inputs)
    alone = [engine.score(v, [t], [x])[0][0] for v, t, x in zip(rows, texts, inputs)]
    assert switched is False
    np.testing.assert_allclose(scores, alone, rtol=0, atol=1e-5)
    composite, _ = mixed.composite_for(mixed.part_order(rows)[0])
    switches = switched_paths(composite)
    assert switches and not isinstance(composite, PartSwitch)  # the trunk is shared, not one model per method
    assert not any(path.startswith("model.classifier") for path in switches)  # heads: one module, rows per adapter
    assert not any(path.endswith(".intermediate") or ".intermediate." in path for path in switches)


def test_fan_out_runs_the_layers_below_the_lowest_adapter_once(mixed_engine):
    """Adapters confined to the top layer (`pe.layers=[1]` of 2) and FC heads on one meme: the embeddings and layer
    0 run for one row, layer 1 and the heads for every adapter (FC heads alone: all but the classifier once); each
    answer equals that adapter alone. An adapter
    in every layer in the batch: all layers run per row (and still equal)."""
    from torch.nn.modules.module import register_module_forward_pre_hook

    engine, _ = mixed_engine
    top = [engine.read_folder_version(f"top_{mode}_{seed}") for mode in TOP for seed in SEEDS[:2]]
    heads = [engine.read_folder_version(f"fc_{seed}") for seed in SEEDS]
    everywhere = [engine.read_folder_version(f"paper_{SEEDS[0]}")]
    text, features = feature_set(1, seed=17)[0]
    given = torch.from_numpy(features)
    seen = []

    def record(module, args):  # what each encoder layer and the pooler is given: how many rows
        if type(module).__name__ in ("BertLayer", "BertPooler"):
            seen.append(args[0].shape[0])

    for fanned, per_row_from in ((top + heads, 1), (heads, 3), (top + everywhere, 0)):
        seen.clear()
        hook = register_module_forward_pre_hook(record)
        try:
            scores, _ = engine.score_batch(fanned, [text] * len(fanned), [given] * len(fanned))
        finally:
            hook.remove()
        assert seen == [1 if stage < per_row_from else len(fanned) for stage in range(3)], (per_row_from, seen)
        alone = [engine.score(v, [text], [given])[0][0] for v in fanned]
        np.testing.assert_allclose(scores, alone, rtol=0, atol=1e-5)
        assert len(set(np.round(scores, 6))) == len(fanned)  # every adapter its own answer


def test_adapters_of_other_bases_never_share_a_batch(mixed_engine):
    import copy

    from mmf_pe.serve.engine import AdapterVersion

    engine, versions = mixed_engine
    elsewhere = copy.copy(versions["fc"][0].kind)
    elsewhere.base = copy.copy(elsewhere.base)  # another base (the engine finds adapters theirs by fingerprint)
    foreign = AdapterVersion("foreign", "f" * 16, versions["fc"][0].config, versions["fc"][0].tensors, elsewhere)
    assert engine.batch_group(foreign) is not engine.batch_group(versions["fc"][0])
    with pytest.raises(ValueError, match="one base"):
        engine.score_batch([versions["fc"][0], foreign], ["a", "b"], [torch.zeros(3, 2048)] * 2)


def test_a_method_without_a_batched_implementation_keeps_one_adapter_batches(mixed_engine, monkeypatch):
    from mmf_pe.serve.engine import Engine
    from mmf_pe.tuners import batched

    engine, versions = mixed_engine
    monkeypatch.delitem(batched.BATCHED, "lora")
    fresh = Engine(engine.folder)  # its kinds are built anew, with lora unregistered
    one, two = (fresh.read_folder_version(f"lora_{seed}") for seed in SEEDS[:2])
    assert one.kind.mixed is None and "pe.method 'lora' has no batched implementation" in one.kind.mixed_refusal
    assert fresh.batch_group(one) is one and fresh.batch_group(two) is two  # never mixed
    pairs = feature_set(2, seed=9)
    texts, inputs = [t for t, _ in pairs], [torch.from_numpy(f) for _, f in pairs]
    scores, switched = fresh.score_batch([one, one], texts, inputs)
    assert switched is True  # the old path: the adapter copied into the skeleton under its lock
    np.testing.assert_allclose(scores, [engine.score(versions["lora"][0], [t], [x])[0][0]
                                        for t, x in zip(texts, inputs)], atol=1e-5)
    with pytest.raises(ValueError, match="'lora' has no batched implementation"):
        fresh.score_batch([one, two], texts, inputs)
    paper = fresh.read_folder_version(f"paper_{SEEDS[0]}")  # batched, but not beside an unbatched method
    assert fresh.batch_group(paper) is paper.kind.base is not fresh.batch_group(one)
    with pytest.raises(ValueError, match="'lora' has no batched implementation"):
        fresh.score_batch([paper, one], texts, inputs)


@pytest.fixture(scope="module")
def mixed_server(mixed_engine):
    """A real uvicorn server on 127.0.0.1 over the mixed folder (fan-out limit 8)."""
    from mmf_pe.serve.app import Settings, create_app
    from tests.serve.helpers import ADMIN_TOKEN, ThreadedServer

    engine, _ = mixed_engine
    settings = Settings(engine.folder, max_batch=8, max_wait_ms=20, max_queue=256, timeout_s=60, poll_s=0.2,
                        admin_token=ADMIN_TOKEN, score_token="", max_fanout=8)
    with ThreadedServer(create_app(settings)) as running:
        yield running


def _post(server, **body):
    import requests

    return requests.post(f"{server.url}/v1/score", json=body, timeout=60)


def test_fan_out_answers_equal_single_adapter_answers(mixed_server):
    import requests

    text, features = feature_set(1, seed=13)[0]
    names = ["fc_21", "paper_22", "lora_21", "ia3_23", "houlsby_21", "pfeiffer_22", "lora_22"]
    answer = _post(mixed_server, text=text, features=features.tolist(), adapters=",".join(names))
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["adapter"]["name"] for r in results] == names
    metrics = requests.get(f"{mixed_server.url}/metrics", timeout=60).text  # before any single request for it
    assert 'mmf_pe_requests_total{adapter="ia3_23",status="200"} 1.0' in metrics  # counted per adapter scored
    for result in results:
        alone = _post(mixed_server, text=text, features=features.tolist(), adapter=result["adapter"]["name"]).json()
        assert result["adapter"] == alone["adapter"]  # name and fingerprint
        assert abs(result["probability"] - alone["probability"]) < 1e-5
        assert result["label"] == alone["label"] and result["threshold"] == alone["threshold"]
    assert max(r["batch_size"] for r in results) > 1  # the two LoRA adapters shared a forward pass
    # adapters in the top layer only and FC heads: the layers below run once for all (engine test above)
    names = ["top_paper_21", "fc_22", "top_lora_22", "top_ia3_21"]
    fanned = _post(mixed_server, text=text, features=features.tolist(), adapters=names).json()["results"]
    assert {r["batch_size"] for r in fanned} == {len(names)}  # two methods, FC heads: one forward pass
    for result in fanned:
        alone = _post(mixed_server, text=text, features=features.tolist(), adapter=result["adapter"]["name"]).json()
        assert result["adapter"] == alone["adapter"] and abs(result["probability"] - alone["probability"]) < 1e-5


def test_fan_out_bad_input_names_the_problem(mixed_server):
    text, features = feature_set(1, seed=14)[0]
    unknown = _post(mixed_server, text=text, features=features.tolist(), adapters="fc_21,nope,paper_22,gone")
    assert unknown.status_code == 404 and "['nope', 'gone']" in unknown.json()["error"]
    everything = _post(mixed_server, text=text, features=features.tolist(), adapters="*")
    assert everything.status_code == 413 and "fan-out limit 8" in everything.json()["error"]
    assert everything.json()["field"] == "adapters"
    empty = _post(mixed_server, text=text, features=features.tolist(), adapters=" , ")
    assert empty.status_code == 422 and empty.json()["field"] == "adapters"
    assert _post(mixed_server, text=text, features=features.tolist(), adapters=[1, 2]).status_code == 422
    listed = _post(mixed_server, text=text, features=features.tolist(), adapters=["fc_21", "ia3_22"])
    assert [r["adapter"]["name"] for r in listed.json()["results"]] == ["fc_21", "ia3_22"]
    assert _post(mixed_server, text=text, features=features.tolist(), adapter="fc_21").status_code == 200  # still up


def test_the_command_line_options_reach_the_app(mixed_engine):
    """`--max-fanout` and `--max-adapters-in-memory` go from `mmf_pe serve`'s command line to the app."""
    from fastapi.testclient import TestClient

    from mmf_pe.serve.cli import build_app, options_from_args, parser
    from mmf_pe.serve.residency import LazyAdapters

    engine, _ = mixed_engine
    args = parser().parse_args([engine.folder, "--max-fanout", "3", "--max-adapters-in-memory", "2",
                                "--no-detector"])
    app = build_app(options_from_args(args, args.folder))
    assert isinstance(app.state.adapters, LazyAdapters) and app.state.adapters.max_resident == 2
    text, features = feature_set(1, seed=15)[0]
    with TestClient(app) as client:
        over = client.post("/v1/score", json={"text": text, "features": features.tolist(),
                                              "adapters": "fc_21,fc_22,fc_23,paper_21"})
        assert over.status_code == 413 and "fan-out limit 3" in over.json()["error"]
        fine = client.post("/v1/score", json={"text": text, "features": features.tolist(),
                                              "adapters": "fc_21,fc_22,paper_21"})
        assert fine.status_code == 200 and len(fine.json()["results"]) == 3
    assert len(app.state.adapters.versions) == 2  # three loaded, the least recently used evicted


def test_folder_adapters_are_memory_mapped_not_copied(mixed_engine):
    """A folder adapter's fp32 tensors are views of its mapped weights file (page cache, not process memory), and
    its fingerprint is the same as from the bytes (as an upload of the same files gets)."""
    from mmf_pe.serve import layout
    from tests.serve.helpers import read_files

    engine, _ = mixed_engine
    version = engine.read_folder_version(f"paper_{SEEDS[0]}")
    weights = os.path.realpath(os.path.join(engine.folder, f"paper_{SEEDS[0]}", "adapter_model.safetensors"))
    mapped = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith(weights):
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                mapped.append((start, end))
    assert mapped, "the weights file is not mapped"
    assert all(any(start <= t.data_ptr() < end for start, end in mapped) for t in version.tensors.values())
    assert version.fingerprint == layout.fingerprint(*read_files(os.path.dirname(weights)))
