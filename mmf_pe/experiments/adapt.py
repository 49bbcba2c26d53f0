"""`mmf_pe adapt`: a new version of an exported adapter, trained on a small labelled set of a new period.

    mmf_pe adapt --from <exported adapter> --data new.jsonl --features new.lmdb --budget-minutes M --out DIR
        [--replay K --old-data old.jsonl --old-features old.lmdb] [--base <served folder>]
        [--publish <served folder | http://host:port> --name X]

The frozen base stays as it is (the served folder's `base/`, default: the folder the adapter sits in); only the
adapter's trained tensors (adapters, classifier, LayerNorms where they trained) start from the parent's values and
train on the new period's labels, mixed with K randomly drawn labelled examples of the old period (replay) so the
old period is not forgotten. Training stops after --epochs or when the budget is spent, whichever comes first; the
budget counts from the start (reading the data and the base included) and keeps a moment for writing the export. The
model and its inputs are the server's own (`mmf_pe.serve.engine`), so the new version scores exactly as trained.

The output is an ordinary exported adapter (safetensors + JSON) whose config adds `lineage`: the parent's
fingerprint, a fingerprint of the training data, the label counts, replay and training facts. `--publish` hands it
to a running `mmf_pe serve`: over its admin API for a URL (token from $MMF_PE_ADMIN_TOKEN), or by the same atomic
version switch in a served folder the server watches. Requests in flight finish on the old version; later ones
report the new fingerprint. No restart.
"""
import argparse
import datetime
import math
import os
import random
import sys
import time

import torch

from mmf_pe.experiments.periods import PeriodDataError, data_fingerprint, load_examples, open_adapter
from mmf_pe.utils.text_normalization import normalize_text

WRITE_RESERVE_S = 2.0  # of the budget, kept for writing the export after training


class AdaptError(ValueError):
    pass


def _check_labels(examples, path):
    if not examples:
        raise AdaptError(f"{path}: no labelled examples; a new period needs labels of both classes")
    classes = {e.label for e in examples}
    if len(classes) < 2:
        raise AdaptError(f"{path}: all {len(examples)} labels are {classes.pop()} (first at {examples[0].where}); "
                         "a new period needs labels of both classes")


def _replay(old_data, old_features, count, seed):
    if count <= 0:
        return []
    if not (old_data and old_features):
        raise AdaptError("--replay K needs the old period's labelled examples: --old-data and --old-features")
    old = load_examples(old_data, old_features)
    if not old:
        raise AdaptError(f"{old_data}: no labelled examples to replay")
    return random.Random(seed).sample(old, min(count, len(old)))


def _train(engine, version, examples, deadline, epochs, lr, batch_size, seed):
    """Train the version's slots on `examples` until `deadline` (time.perf_counter()); returns facts. No update is
    started that would end past the deadline (judged by the slowest update so far). The kind's model is this
    process's own."""
    from mmf_pe.utils.precision import autocast

    kind, model = version.kind, version.kind.model
    generator = torch.Generator().manual_seed(seed)
    started, updates, epochs_run, stopped_by, losses = time.perf_counter(), 0, 0, "epochs", []
    slowest = 0.0
    with kind.lock:
        kind.put_on(version)
        kind.current = None  # the slots are about to differ from the parent version
        slots = list(kind.slots.values())
        for parameter in slots:
            parameter.requires_grad_(True)
        optimizer = torch.optim.AdamW(slots, lr=lr)
        model.train()
        try:
            for epoch in range(epochs):
                order = torch.randperm(len(examples), generator=generator).tolist()
                for start in range(0, len(order), batch_size):
                    step_started = time.perf_counter()
                    if step_started + slowest >= deadline:
                        stopped_by = "budget"
                        break
                    batch = [examples[i] for i in order[start:start + batch_size]]
                    texts = [normalize_text(e.text, version.text_normalization) for e in batch]  # as served
                    sample = engine.sample_list(texts, [e.features for e in batch], version)
                    with autocast(engine.precision, engine.device.type):  # the engine's precision (fp32 default)
                        scores = model.forward(sample)["scores"]
                    loss = torch.nn.functional.cross_entropy(scores.float(), torch.tensor([e.label for e in batch]))
                    if not torch.isfinite(loss):
                        raise AdaptError(f"non-finite loss at update {updates + 1} (epoch {epoch + 1}); try a lower "
                                         "--lr. Nothing was written.")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    slowest = max(slowest, time.perf_counter() - step_started)
                    updates += 1
                    losses.append(loss.item())
                if stopped_by == "budget":
                    break
                epochs_run += 1
        finally:
            model.eval()
        if not all(torch.isfinite(p).all() for p in slots):
            raise AdaptError("training produced non-finite weights; try a lower --lr. Nothing was written.")
    return {"updates": updates, "epochs": epochs_run, "stopped_by": stopped_by, "lr": lr, "batch_size": batch_size,
            "precision": engine.precision,
            "seed": seed, "seconds": round(time.perf_counter() - started, 3),
            "last_loss": round(sum(losses[-10:]) / max(1, len(losses[-10:])), 5) if losses else None}


def adapt(parent, data, features, out, budget_minutes, replay=0, old_data=None, old_features=None, base=None,
          epochs=10, lr=1e-3, batch_size=16, seed=0, engine=None):
    """Train and write the new version; returns (out dir, its config dict)."""
    from mmf_pe.tuners.export import CONFIG_NAME, read_adapter, save_adapter

    if not budget_minutes > 0 or not math.isfinite(budget_minutes):
        raise AdaptError(f"--budget-minutes must be a positive number, got {budget_minutes}")
    started = time.perf_counter()  # the budget covers reading data and base too, not only the training loop
    new = load_examples(data, features)
    _check_labels(new, data)
    engine, version, _, _ = open_adapter(parent, base, engine)
    old = _replay(old_data, old_features, replay, seed)
    torch.manual_seed(seed)
    deadline = started + budget_minutes * 60 - WRITE_RESERVE_S
    training = _train(engine, version, new + old, deadline, epochs, lr, batch_size, seed)
    training["total_seconds"] = round(time.perf_counter() - started, 3)
    if training["updates"] == 0:
        raise AdaptError(f"--budget-minutes {budget_minutes} was spent reading the data and the base before one "
                         f"update ({training['total_seconds']:.1f} s); give a larger budget. Nothing was written.")
    times = [e.timestamp_ms for e in new if e.timestamp_ms is not None]
    parent_lineage = version.config.get("lineage") or {}
    lineage = {
        "parent": {"fingerprint": version.fingerprint, "path": os.path.abspath(parent),
                   "base_fingerprint": version.kind.digest},
        "generation": int(parent_lineage.get("generation", 0)) + 1,
        "data": {"annotations": os.path.abspath(data), "features": os.path.abspath(features),
                 "fingerprint": data_fingerprint(new), "labels": len(new),
                 "positives": sum(e.label for e in new),
                 "first_posted": min(times) if times else None, "last_posted": max(times) if times else None},
        "replay": {"requested": replay, "used": len(old),
                   "annotations": os.path.abspath(old_data) if old and old_data else None,
                   "fingerprint": data_fingerprint(old) if old else None},
        "training": dict(training, budget_minutes=budget_minutes),
        "created_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    os.makedirs(out, exist_ok=True)
    save_adapter(version.kind.model, out, source=os.path.abspath(parent), feature_provenance=version.provenance,
                 threshold=version.config.get("threshold"), lineage=lineage,
                 text_normalization=version.config.get("text_normalization"))
    config, _ = read_adapter(out)  # read back through the exporter's own checks
    if config["base_fingerprint"]["digest"] != version.kind.digest:
        raise AdaptError(f"{os.path.join(out, CONFIG_NAME)}: the new version's base fingerprint differs from its "
                         "parent's; this is a bug")
    return out, config


def check_publish_target(target, name, token=None):
    """Refuse a publish that cannot work before any training: bad name, no token for a URL, not a served folder.
    Returns the admin token for a URL (None for a folder)."""
    from mmf_pe.serve import layout

    try:
        layout.check_name(name)
    except ValueError as error:
        raise AdaptError(f"--name: {error}") from None
    if target.startswith(("http://", "https://")):
        token = token or os.environ.get("MMF_PE_ADMIN_TOKEN")
        if not token:
            raise AdaptError("publishing to a server needs its admin token in $MMF_PE_ADMIN_TOKEN")
        return token
    if not os.path.isdir(os.path.join(target, layout.BASE_DIR)):
        raise AdaptError(f"{target}: not a served folder (no {layout.BASE_DIR}/) and not an http(s) URL")
    return None


def publish(adapter_dir, target, name, token=None):
    """Hand an exported adapter to a running server; returns its fingerprint there."""
    from mmf_pe.serve import layout
    from mmf_pe.tuners.export import CONFIG_NAME, WEIGHTS_NAME

    token = check_publish_target(target, name, token)
    with open(os.path.join(adapter_dir, CONFIG_NAME), "rb") as f:
        config_bytes = f.read()
    with open(os.path.join(adapter_dir, WEIGHTS_NAME), "rb") as f:
        weights_bytes = f.read()
    if target.startswith(("http://", "https://")):
        import requests

        url = f"{target.rstrip('/')}/v1/adapters/{name}"
        try:
            answer = requests.post(url, headers={"Authorization": f"Bearer {token}"}, timeout=300,
                                   files={"config": (CONFIG_NAME, config_bytes), "weights": (WEIGHTS_NAME,
                                                                                             weights_bytes)})
        except requests.RequestException as error:
            raise AdaptError(f"{url}: {type(error).__name__}: {error}") from None
        if answer.status_code != 201:
            try:
                detail = answer.json().get("error")
            except ValueError:
                detail = answer.text[:300]
            raise AdaptError(f"{url}: HTTP {answer.status_code}: {detail}")
        return answer.json()["fingerprint"]
    return layout.publish(target, name, config_bytes, weights_bytes)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mmf_pe adapt", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    parser.add_argument("--from", dest="parent", required=True, help="the exported adapter to start from")
    parser.add_argument("--data", required=True, help="the new period's labelled annotations (jsonl)")
    parser.add_argument("--features", required=True, help="their feature LMDB")
    parser.add_argument("--budget-minutes", type=float, required=True, help="training time limit")
    parser.add_argument("--out", required=True, help="folder for the new exported adapter")
    parser.add_argument("--replay", type=int, default=0, help="old-period examples mixed in (default 0)")
    parser.add_argument("--old-data", help="the old period's labelled annotations (for --replay)")
    parser.add_argument("--old-features", help="their feature LMDB")
    parser.add_argument("--base", help="served folder with base/ (default: the folder --from sits in)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--publish", help="a served folder or a server URL (http://127.0.0.1:8000)")
    parser.add_argument("--name", help="adapter name to publish under")
    args = parser.parse_args(argv)
    if args.publish and not args.name:
        parser.error("--publish needs --name")
    try:
        if args.publish:
            check_publish_target(args.publish, args.name)
        out, config = adapt(args.parent, args.data, args.features, args.out, args.budget_minutes, args.replay,
                            args.old_data, args.old_features, args.base, args.epochs, args.lr, args.batch_size,
                            args.seed)
        lineage = config["lineage"]
        print(f"{out}: {lineage['data']['labels']} new labels ({lineage['data']['positives']} positive) + "
              f"{lineage['replay']['used']} replayed, {lineage['training']['updates']} updates in "
              f"{lineage['training']['seconds']:.1f} s (stopped by {lineage['training']['stopped_by']}); parent "
              f"{lineage['parent']['fingerprint']}")
        if args.publish:
            fingerprint = publish(out, args.publish, args.name)
            print(f"published as {args.name!r} at {args.publish}: fingerprint {fingerprint}")
    except (AdaptError, PeriodDataError) as error:
        print(f"mmf_pe adapt: error: {error}", file=sys.stderr)
        return 2
    return 0
