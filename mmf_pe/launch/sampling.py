"""A training sample order that depends on the seed and the epoch only, not on the number of processes.

rc10 shuffles with a RandomSampler (global RNG) in a 1-process run and with DistributedSampler (seeded by MMF's epoch
counter, which advances by world_size per epoch) in a multi-process run, so a 4-GPU run never sees the batches a 1-GPU
run sees. Here every run draws one permutation per epoch from `seed + epoch`; rank r of W takes every W-th index of it,
so the per-rank batches of global step k (batch_size / W each) together are exactly the 1-process run's batch k.
Exception: when the set does not divide evenly, DistributedSampler pads the epoch with repeated samples, so the last
(partial) global batch of an epoch holds a few extra samples in a multi-process run.
"""
from torch.utils.data import DataLoader, DistributedSampler


class GlobalOrderSampler(DistributedSampler):
    """DistributedSampler whose epoch comes from `epoch_fn()` at every pass (also in 1-process runs)."""

    def __init__(self, dataset, num_replicas, rank, seed, epoch_fn):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.epoch_fn = epoch_fn
        self.skip = 0

    def skip_once(self, num_indices):
        """The next pass starts `num_indices` into this rank's order (a run resumed inside an epoch)."""
        self.skip = int(num_indices)

    def __len__(self):
        return max(super().__len__() - self.skip, 0)

    def __iter__(self):
        self.set_epoch(self.epoch_fn())
        skip, self.skip = self.skip, 0
        indices = super().__iter__()
        return iter(list(indices)[skip:]) if skip else indices


def data_epoch(mmf_epoch, world_size):
    """0-based pass over the data from rc10's `current_epoch` (1, 2, 3... in 1 process; 1, 1+W, 1+2W... in W)."""
    return max(int(mmf_epoch or 1) - 1, 0) // max(world_size, 1)


def with_sampler(loader, sampler):
    """A copy of a DataLoader built by MMF, reading through `sampler` (DataLoader attributes cannot be re-set)."""
    new = DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, collate_fn=loader.collate_fn,
                     num_workers=loader.num_workers, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                     timeout=loader.timeout, worker_init_fn=loader.worker_init_fn)
    new.dataset_type = getattr(loader, "dataset_type", None)
    return new


def use_global_order(multi_loader, seed, rank, world_size, epoch_fn):
    """Give every training loader of rc10's MultiDatasetLoader a GlobalOrderSampler. Returns the samplers."""
    samplers = []
    for i, loader in enumerate(multi_loader.loaders):
        sampler = GlobalOrderSampler(loader.dataset, world_size, rank, int(seed), epoch_fn)
        multi_loader.loaders[i] = with_sampler(loader, sampler)
        if i < len(multi_loader.samplers):
            multi_loader.samplers[i] = sampler
        else:
            multi_loader.samplers.append(sampler)
        samplers.append(sampler)
    multi_loader.current_loader = multi_loader.loaders[multi_loader.current_index]
    return samplers


def global_batches(num_samples, batch_size, world_size, seed, epoch):
    """The global batches (sorted index lists) of one epoch as the samplers above produce them: for checks and tests."""
    per_rank = batch_size // world_size
    ranks = []
    for rank in range(world_size):
        sampler = GlobalOrderSampler(range(num_samples), world_size, rank, seed, lambda: epoch)
        indices = list(sampler)
        ranks.append([indices[i:i + per_rank] for i in range(0, len(indices), per_rank)])
    return [sorted(sum((r[k] for r in ranks), [])) for k in range(len(ranks[0]))]


