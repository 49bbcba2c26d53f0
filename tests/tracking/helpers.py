"""Test helpers: read an offline W&B run file with wandb's own protobuf records; a 2-process gloo worker; a download
recorder (a run must fetch nothing)."""
import glob
import json
import os
import struct
import time

BLOCK = 32768  # the .wandb file is a LevelDB-style log: 7-byte file header, 32 KiB blocks, 7-byte record headers


def read_wandb_records(run_file):
    from wandb.proto import wandb_internal_pb2 as pb

    raw = open(run_file, "rb").read()
    assert raw[:4] == b":W&B", f"{run_file} is not a W&B transaction log"
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(raw):
        left = BLOCK - pos % BLOCK
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        pos += 7
        if kind == 0 and length == 0:  # zero padding to the block end
            pos += left - 7
            continue
        pending += raw[pos:pos + length]
        pos += length
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_history(wandb_dir):
    """[{key: value}] of every history row of the one offline run under wandb_dir, plus its config and summary."""
    files = glob.glob(os.path.join(wandb_dir, "wandb", "offline-run-*", "run-*.wandb"))
    assert len(files) == 1, f"expected one offline run under {wandb_dir}, found {files}"
    # wandb's service process writes the file after run.finish() returns; it is complete once the exit record is in
    deadline = time.monotonic() + 60
    records = list(read_wandb_records(files[0]))
    while not any(r.WhichOneof("record_type") == "exit" for r in records) and time.monotonic() < deadline:
        time.sleep(0.5)
        records = list(read_wandb_records(files[0]))
    rows, config, summary = [], {}, {}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "history":
            rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item})
        elif kind in ("config", "run"):  # init's config travels in the run record
            for item in (record.config if kind == "config" else record.run.config).update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                if item.key or item.nested_key:
                    summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return rows, config, summary


def gather_worker(rank, world_size, store, out_dir, data):
    """One process of the 2-process test: exact metrics through gather_predictions and the trainer mixin.

    MMF is imported before the process group exists, as `mmf_run` does: modules imported later can capture the group
    in default arguments (`group=group.WORLD`), so `destroy_process_group` would not free it and gloo's worker threads
    would outlive the interpreter (SIGABRT at exit, `terminate called without an active exception`)."""
    import torch
    import torch.distributed as dist

    _import_mmf()
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        from mmf_pe.metrics import binary_metrics, gather_predictions

        mine = data[rank]
        scores, targets, ids = gather_predictions(torch.tensor(mine["scores"]), torch.tensor(mine["targets"]),
                                                  torch.tensor(mine["ids"]))
        result = {"gathered": binary_metrics(scores, targets), "n": len(targets), "ids": ids.tolist()}
        result["trainer"] = _trainer_evaluate(mine)
        result["unlabelled"] = _trainer_evaluate(mine, labelled=False)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def _import_mmf():
    from mmf_pe.compat import install

    install()
    import mmf.trainers.base_trainer  # noqa: F401

    import mmf_pe.tracking.hooks  # noqa: F401


def _trainer_evaluate(mine, labelled=True):
    """The mmf_pe trainer's evaluate() over a loader of this rank's batches: the meter's roc_auc (labelled), or
    what an unlabelled split leaves for the prediction files."""
    import torch
    from mmf.common.report import Report
    from mmf.common.sample import SampleList
    from mmf.modules.metrics import Metrics
    from mmf.trainers.base_trainer import BaseTrainer

    from mmf_pe.tracking.hooks import TrackingTrainerMixin

    class Trainer(TrackingTrainerMixin, BaseTrainer):
        def __init__(self):
            self.model = torch.nn.Linear(1, 1)
            self.metrics = Metrics(["roc_auc", "accuracy"])

        def _forward_pass(self, batch):
            return Report(batch, {"scores": batch["logits"], "losses": {"val/toy/ce": torch.tensor(0.5)}})

    def batch(rows):
        sample = SampleList()
        sample.add_field("logits", torch.tensor([mine["scores"][i] for i in rows]))
        if labelled:
            sample.add_field("targets", torch.tensor([mine["targets"][i] for i in rows]))
        sample.add_field("id", torch.tensor([mine["ids"][i] for i in rows]))
        sample.add_field("dataset_type", "val")
        sample.add_field("dataset_name", "toy")
        return sample

    n = len(mine["ids"])
    loader = [batch(range(0, n // 2)), batch(range(n // 2, n))]
    trainer = Trainer()
    report, meter = trainer.evaluate(loader)
    if not labelled:
        kept = trainer.last_predictions
        return {"targets": kept["targets"], "ids": kept["ids"].tolist(), "n": int(report.batch_size),
                "scores": report["scores"].tolist(), "meters": sorted(meter.meters)}
    return {"roc_auc": meter.meters["val/toy/roc_auc"].global_avg, "n": int(report.batch_size)}


def record_downloads(patch, calls):
    """Make every download entry point of MMF (`mmf.utils.download`) and of mmf-pe append its name to `calls` and
    fail, for the duration of `patch` (a pytest MonkeyPatch)."""
    import mmf.utils.download as mmf_download

    import mmf_pe.utils.download as ours

    def recorder(module, name):
        def called(*args, **kwargs):
            calls.append(f"{module.__name__}.{name}")
            raise AssertionError(f"a run tried to download: {module.__name__}.{name}{args}")
        return called

    for name in ("download", "download_resources", "download_resource", "download_pretrained_model",
                 "download_from_google_drive"):
        patch.setattr(mmf_download, name, recorder(mmf_download, name))
    patch.setattr(ours, "fetch", recorder(ours, "fetch"))
