"""The input pipeline (issue 18, item 4): DataLoader workers read the LMDB safely (F24) and give the same batches as
none; fp16-stored features stay fp16 (F28) and score as fp32; the `mmf_pe` trainer's collate (formerly F29) is rc10's
SampleList, built in shared memory in workers; its pinned memory follows the run's device."""
import os
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mmf_pe_testing import write_run_config
from tests.data.helpers import hostile_record, put_raw


def build_trainer(data_dir, tmp_path, monkeypatch, workers=0, *extra):
    """The `mmf_pe` trainer as `mmf_run` builds it (tiny model, FC mode) on a tiny HMD data dir, loaded."""
    from mmf_pe.experiments.evaluate import _build_trainer

    monkeypatch.setenv("MMF_DATA_DIR", data_dir)
    config = write_run_config(tmp_path, "hmd_fc.yaml")
    return _build_trainer([f"config={config}", "model=visual_bert_pe", "dataset=hateful_memes", "run_type=train",
                           f"env.save_dir={tmp_path / 'save'}", f"training.num_workers={workers}", "training.seed=1",
                           *extra])


def train_dataset(trainer):
    return trainer.dataset_loader.train_dataset.datasets[0]


def feature_reader(dataset):
    dataset[0]  # rc10 creates the reader (and opens the LMDB) on the first read
    return dataset.features_db.feature_readers[0].feat_reader


def epoch(trainer):
    return [(batch["id"].clone(), batch["image_feature_0"].clone(), batch["targets"].clone(),
             batch["input_ids"].clone()) for batch in trainer.train_loader]


def test_two_workers_give_the_same_batches_as_none(tiny_hmd_fp16, tmp_path, monkeypatch):
    batches = {}
    for workers in (0, 2):
        trainer = build_trainer(tiny_hmd_fp16["data_dir"], tmp_path / str(workers), monkeypatch, workers)
        assert trainer.train_loader.loaders[0].num_workers == workers
        batches[workers] = epoch(trainer)
    assert len(batches[0]) == len(batches[2]) == 64 // 8
    for without, with_workers in zip(batches[0], batches[2]):
        for a, b in zip(without, with_workers):
            assert a.dtype == b.dtype and torch.equal(a, b)
    assert batches[2][0][1].dtype == torch.float16  # F28 on the real path, also through workers


class EnvProbe(Dataset):
    """Reads a sample through the real dataset, then reports which LMDB environment its reader used."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.reader = feature_reader(dataset)  # the parent has read: its environment is open before the fork
        self.parent_env = self.reader.env

    def __len__(self):
        return 8

    def __getitem__(self, index):
        self.dataset[index]
        env = self.reader.env
        return {"pid": os.getpid(), "env_pid": getattr(self.reader, "env_pid", None),
                "parent_env": env is self.parent_env, "flags": env.flags()}


def test_f24_each_worker_opens_its_own_readonly_lock_free_environment(tiny_hmd, tmp_path, monkeypatch):
    probe = EnvProbe(train_dataset(build_trainer(tiny_hmd["data_dir"], tmp_path, monkeypatch)))
    assert probe.reader.env_pid == os.getpid()
    seen = list(DataLoader(probe, batch_size=None, num_workers=2))
    assert len({s["pid"] for s in seen}) == 2 and os.getpid() not in {s["pid"] for s in seen}
    for sample in seen:
        assert sample["env_pid"] == sample["pid"] and not sample["parent_env"], sample
        assert sample["flags"]["readonly"] and not sample["flags"]["lock"] and not sample["flags"]["readahead"]
    sent = pickle.loads(pickle.dumps(probe.reader))  # as to a spawn / forkserver worker: the environment stays
    assert sent.env is None and probe.reader.env is probe.parent_env
    assert sent.read(os.path.join(sent.db_path, "10000.npy"))[0].shape == (8, 32) and sent.env is not None


def test_f24_a_hostile_record_is_refused_inside_a_worker_naming_the_lmdb_and_key(hmd, tmp_path, monkeypatch):
    from mmf_pe.utils.safe_pickle import UnsafeRecordError

    trainer = build_trainer(hmd["data_dir"], tmp_path, monkeypatch, 2)  # pre-flight checks pass on clean data
    marker = str(tmp_path / "created_by_a_feature_record")
    key = str(train_dataset(trainer).annotation_db[5]["id"])
    put_raw(hmd["features"], {key: hostile_record(marker)})
    batches = iter(trainer.train_loader.loaders[0])  # the trainer's DataLoader (its 2 workers, our sampler)
    try:
        with pytest.raises(UnsafeRecordError) as error:
            list(batches)
    finally:
        batches._shutdown_workers()  # now, not whenever the kept traceback is collected (that waited ~5 s a worker)
    message = str(error.value)
    assert "DataLoader worker process" in message and "refused to unpickle io.open" in message, message
    assert f"{hmd['features']} key '{key}'" in message
    assert not os.path.exists(marker)


def test_f28_fp16_features_stay_fp16_and_score_exactly_as_fp32(tiny_hmd_fp16, tmp_path, monkeypatch):
    from mmf.datasets.databases.readers.feature_readers import LMDBFeatureReader

    trainer = build_trainer(tiny_hmd_fp16["data_dir"], tmp_path, monkeypatch)
    dataset = train_dataset(trainer)
    reader = feature_reader(dataset)
    path = os.path.join(reader.db_path, dataset.preprocess_sample_info(dict(dataset.annotation_db[0]))["feature_path"])
    ours, info = reader.read(path)
    rc10, rc10_info = LMDBFeatureReader.read.__wrapped__(reader, path)  # rc10: a new float32 copy
    assert ours.dtype == torch.float16 and rc10.dtype == torch.float32 and torch.equal(ours.float(), rc10)
    assert info["max_features"] == rc10_info["max_features"] == 8 and info.keys() == rc10_info.keys()

    batch = next(iter(trainer.train_loader))
    assert batch["image_feature_0"].dtype == torch.float16
    as_fp32 = batch.copy()
    as_fp32.image_feature_0 = batch["image_feature_0"].float()
    model = trainer.model.eval()
    with torch.no_grad():
        scores_fp32 = model(as_fp32)["scores"]
        scores_fp16 = model(batch)["scores"]
    assert torch.equal(scores_fp16, scores_fp32)


def test_f28_pads_in_the_stored_dtype_and_copies_only_when_needed():
    from mmf_pe.data.loader import pad_features

    full = np.arange(12, dtype=np.float16).reshape(4, 3)
    tensor, count = pad_features(full, 4)
    assert count == 4 and tensor.dtype == torch.float16 and tensor.data_ptr() == full.ctypes.data  # no copy
    short, count = pad_features(full[:2], 4)
    assert count == 2 and short.dtype == torch.float16 and short[2:].abs().sum() == 0
    assert torch.equal(short[:2], torch.from_numpy(full[:2]))
    other, count = pad_features(np.ones((6, 3), np.float64), 4)  # rc10: other dtypes -> float32, count kept
    assert other.dtype == torch.float32 and other.shape == (4, 3) and count == 6


def test_f29_collate_is_rc10s_samplelist_and_is_built_in_shared_memory_in_workers(tiny_hmd, tmp_path, monkeypatch):
    from mmf.common.batch_collator import BatchCollator

    from mmf_pe.trainers.loading import SampleListCollator

    trainer = build_trainer(tiny_hmd["data_dir"], tmp_path, monkeypatch)
    assert all(type(loader.collate_fn) is SampleListCollator for loader in trainer.train_loader.loaders)
    dataset = train_dataset(trainer)
    samples = [dataset[i] for i in range(5)]
    collator, rc10_collator = SampleListCollator("hateful_memes", "train"), BatchCollator("hateful_memes", "train")
    ours, rc10 = collator(samples), rc10_collator(samples)
    assert_same_sample_list(ours, rc10)
    assert ours.get_batch_size() == rc10.get_batch_size() == 5
    assert ours.dataset_name == rc10.dataset_name and ours.dataset_type == rc10.dataset_type

    def in_a_worker(batch):
        return {"ours": collator(batch)["image_feature_0"].is_shared(),
                "rc10": rc10_collator(batch)["image_feature_0"].is_shared()}

    shared = next(iter(DataLoader(dataset, batch_size=4, num_workers=1, collate_fn=in_a_worker)))
    assert shared == {"ours": True, "rc10": False}  # rc10's batch is copied once more to be sent


def assert_same_sample_list(ours, rc10):
    assert list(ours.keys()) == list(rc10.keys())
    assert ours._get_tensor_field() == rc10._get_tensor_field()
    for field in rc10.keys():
        a, b = ours[field], rc10[field]
        assert type(a) is type(b), field
        if isinstance(b, torch.Tensor):
            assert a.dtype == b.dtype and torch.equal(a, b), field
        elif isinstance(b, dict):
            assert_same_sample_list(a, b)
        else:
            assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b)), field


def test_f29_pin_memory_follows_the_runs_device(tiny_hmd, tmp_path, monkeypatch):
    from mmf.utils.build import build_dataloader_and_sampler
    from omegaconf import OmegaConf

    from mmf_pe.trainers.loading import configure_loaders, trainer_loaders

    trainer = build_trainer(tiny_hmd["data_dir"], tmp_path, monkeypatch)
    loaders = list(trainer_loaders(trainer))
    assert len(loaders) == 3 and trainer.device.type == "cpu"  # train, val, test
    assert all(loader.pin_memory is False for loader in loaders)  # the base config's null on CPU
    for setting, device, pinned in ((None, "cuda", True), (None, "cpu", False), (False, "cuda", False),
                                    (True, "cpu", True)):
        training = OmegaConf.merge(trainer.config.training, {"pin_memory": setting})
        loader, _ = build_dataloader_and_sampler(train_dataset(trainer), training)
        assert not loader.pin_memory or setting is True  # rc10: the setting as it is (null: off, on CUDA too)
        configure_loaders([loader], setting, torch.device(device))
        assert loader.pin_memory is pinned, (setting, device)


def test_f29_pin_memory_without_a_trainer_follows_training_device():
    from mmf_pe.data.loader import resolve_pin_memory

    assert resolve_pin_memory(None, "cuda") and resolve_pin_memory("auto", torch.device("cuda", 1))
    assert not resolve_pin_memory(None, "cpu") and not resolve_pin_memory(None, None)
