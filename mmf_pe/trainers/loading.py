"""The `mmf_pe` trainer's data loaders: rc10's, with our collator and the pin-memory choice of the run's device.

rc10's `build_dataloader_and_sampler` builds each loader with rc10's `BatchCollator` and `training.pin_memory` as it
is. `MMFPETrainer.load_datasets` hands every loader it made (training, validation, test; `mmf_predict` and
`mmf_pe evaluate` included) to `configure_loaders`, before any is iterated:
- `SampleListCollator`: rc10's `SampleList(samples)` (same fields, lists, nesting, errors) stacked in one
  single-threaded copy per tensor field (`mmf_pe.data.loader.collate_samples`), in a DataLoader worker straight into
  shared memory. rc10's copies sample by sample with torch's intra-op thread pool: ~125 ms per batch of
  16 x 100 x 2048 features on a busy 2-core CPU with `num_workers: 0`, 2-4 ms with one thread (docs/benchmarks.md).
- `training.pin_memory: null` (our base config's default) = on when the run's device is CUDA (so the trainer's
  `.to(device, non_blocking=True)` is an asynchronous copy), off on CPU; true / false force it.
A run with another trainer gets rc10's collate and `training.pin_memory` as given (null: off).
"""
from mmf.common.batch_collator import BatchCollator
from mmf.common.sample import SampleList

from mmf_pe.data.loader import collate_samples, resolve_pin_memory


class SampleListCollator(BatchCollator):
    """rc10's BatchCollator, the batch stacked once per field (same SampleList)."""

    def __call__(self, batch):
        sample_list = collate_samples(batch, SampleList)
        sample_list.dataset_name = self._dataset_name
        sample_list.dataset_type = self._dataset_type
        return sample_list


def trainer_loaders(trainer):
    """Every DataLoader of the trainer's rc10 `DatasetLoader` (its train / val / test `MultiDatasetLoader`s)."""
    holder = trainer.dataset_loader
    for name in ("train_dataset", "val_dataset", "test_dataset"):
        yield from getattr(getattr(holder, name, None), "loaders", None) or []


def configure_loaders(loaders, pin_memory_setting, device):
    """Our collator for rc10's, and `pin_memory` for the run's device, on DataLoaders not yet iterated (both are
    read when an iterator starts; DataLoader allows setting them after construction)."""
    pin_memory = resolve_pin_memory(pin_memory_setting, device)
    for loader in loaders:
        collate = loader.collate_fn
        if type(collate) is BatchCollator:
            loader.collate_fn = SampleListCollator(collate._dataset_name, collate._dataset_type)
        loader.pin_memory = pin_memory
