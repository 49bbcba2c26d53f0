"""The input pipeline's hot path: rc10's feature reader (the plugin's patches F24, F28) and the trainer's collate.

Measured on the real HMD path at 100 x 2048 features (docs/benchmarks.md, "Input pipeline"): in the training process
(`num_workers: 0`) rc10's collate copied each sample into the batch with torch's intra-op thread pool, which on a busy
CPU waits for descheduled threads (~125 ms per batch of 16 here against 2-4 ms with one thread); the batch is now
stacked by numpy, one thread, as DataLoader workers (which torch runs with one thread) always did. And a record was
copied five times on its way to the batch (LMDB -> bytes -> unpickled array -> rc10's float32 padding -> rc10's
collate -> shared memory for the trip from a worker); now twice (LMDB -> the unpickled array -> the batch, which a
worker builds straight in shared memory), and fp16 stays fp16.

- `open_readonly_env`: the LMDB environment of this process (F24): readonly, lock-free, no read-ahead.
- `pad_features`: rc10's padding to `max_features` rows, in the stored dtype (fp16 stays fp16, F28) and without a
  copy when the record already has that many rows.
- `collate_samples`: rc10's `SampleList(samples)` (same fields, lists, nesting, errors), stacked once (the trainer's
  collator).
- `resolve_pin_memory`: `training.pin_memory` null -> on when the run's device is CUDA (the trainer's loaders).
"""
import collections.abc
import os

import numpy as np
import torch

# dtypes a padded feature tensor keeps; anything else becomes float32 as in rc10 (float64 features, ints)
KEPT_FEATURE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


def open_readonly_env(path):
    """The read-only, lock-free LMDB environment a reader uses in this process. No read-ahead (rc10's choice, LMDB's
    advice for random reads of a database larger than memory): with a warm page cache it measured the same as with
    read-ahead (HMD, fp32, 0 and 1 workers, two runs each)."""
    import lmdb

    return lmdb.open(path, subdir=os.path.isdir(path), readonly=True, lock=False, readahead=False, meminit=False)


def pad_features(features, max_loc):
    """rc10's `PaddedFasterRCNNFeatureReader.read` padding: (max_loc, D) features and the record's region count.

    rc10 copies every record into a new float32 (max_loc, D) array. Here float32 and float16 keep their dtype (fp16
    features stay half the size up to the model, which casts them where they enter: exact, fp16 -> fp32 loses
    nothing) and a record that already has max_loc rows is used as it is (no copy), when its array is writable.
    Other dtypes become float32 as in rc10. Like rc10, the count is the record's own row count, also above max_loc.
    """
    if features.ndim > 2:  # rc10: "Handle the case of ResNet152 features"
        features = features.reshape(-1, features.shape[-1])
    count, dim = features.shape
    dtype = features.dtype if features.dtype in KEPT_FEATURE_DTYPES else np.dtype(np.float32)
    if count == max_loc and features.dtype == dtype and features.flags.writeable and features.flags.c_contiguous:
        padded = features
    else:
        padded = np.zeros((max_loc, dim), dtype=dtype)
        padded[:count] = features[:max_loc]
    return torch.from_numpy(padded), count


def collate_samples(samples, sample_list):
    """rc10's `SampleList(samples)` for a list of `Sample`s, each tensor field stacked in one copy (`sample_list`:
    rc10's SampleList class, handed in by the compatibility layer; this module never imports MMF).

    The same SampleList as rc10's: fields in the first sample's order, tensors stacked along a new first dimension
    (the first tensor field is the batch's tensor field), other values in lists, nested mappings collated the same
    way, rc10's error for tensors of different lengths. In a DataLoader worker the stacked tensors are allocated in
    shared memory (as torch's default_collate does), so the trip to the training process copies nothing more.
    Anything else (rc10's dict / (key, value) forms) is rc10's own code.
    """
    if not samples or not all(isinstance(s, collections.abc.Mapping) for s in samples):
        return sample_list(samples)
    batch = sample_list()
    first = samples[0]
    for field in first.keys():
        values = [sample[field] for sample in samples]
        if isinstance(values[0], torch.Tensor):
            _check_lengths(field, values)
            batch[field] = _stack(values)
            if batch._get_tensor_field() is None:
                batch._set_tensor_field(field)
        elif isinstance(values[0], collections.abc.Mapping):
            batch[field] = collate_samples(values, sample_list)
        else:
            batch[field] = values
    return batch


def _check_lengths(field, values):
    first = values[0]
    for value in values:  # rc10's check (sample.py): tensors other than 0-d must match the first's length
        if isinstance(value, torch.Tensor) and value.dim() != 0 and value.size(0) != first.size(0):
            raise AssertionError("Fields for all samples must be equally sized. {} is of different sizes".format(field))


def _stack(values):
    """One (N, ...) tensor of `values`: in a DataLoader worker in shared memory; copied by numpy (one thread)."""
    first = values[0]
    if not all(isinstance(v, torch.Tensor) and v.device == first.device and v.dtype == first.dtype
               and v.shape == first.shape for v in values):
        out = first.new_empty((len(values), *first.size()))  # rc10's way, with its casting and broadcasting
        for index, value in enumerate(values):
            out[index] = value
        return out
    shape = (len(values), *first.shape)
    if torch.utils.data.get_worker_info() is not None and first.device.type == "cpu":
        storage = first._typed_storage()._new_shared(len(values) * first.numel(), device=first.device)
        out = first.new(storage).resize_(shape)
    else:
        out = first.new_empty(shape)
    try:
        np.stack([value.numpy() for value in values], out=out.numpy())
    except (TypeError, RuntimeError):  # not on CPU, requires grad, or a dtype numpy lacks (bfloat16, float8, ...)
        torch.stack(values, 0, out=out)
    return out


def resolve_pin_memory(setting, device):
    """`training.pin_memory`: true / false as given; null (the default) -> True when the run's device is CUDA.

    `device` is the run's device (the trainer registers it as `current_device` before it builds the loaders), or the
    configured `training.device` where no trainer runs. Pinned batches make the trainer's `.to(device,
    non_blocking=True)` an asynchronous copy; on CPU pinning is only a cost."""
    if setting is not None and str(setting).lower() not in ("auto", "none", "null"):
        return bool(setting)
    if device is None:
        return False
    try:
        return torch.device(device).type == "cuda"
    except (RuntimeError, TypeError):
        return False
