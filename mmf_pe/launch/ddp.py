"""Trainer-side multi-process handling, called by the `mmf_pe` trainer (rc10's BaseTrainer assumes CUDA here).

rc10's `_set_device` puts every distributed run on `cuda:<rank>` and `parallelize_model` wraps DDP only on CUDA, so a
gloo run on CPU trained W unsynchronised models. Here: the device follows CUDA's presence, DDP wraps on CPU too,
frozen parameters (FC / PE modes) are left out of DDP's buckets (no all-reduce for them), and
`find_unused_parameters` stays off unless the config asks for it (no mode of visual_bert_pe needs it; DDP names the
parameters if one ever does). Checkpoints and logs stay rank 0's, as in rc10 (`is_master()` guards; see F12).
"""
import torch
from mmf.common.registry import registry
from mmf.utils.distributed import broadcast_scalar, get_rank, get_world_size

from mmf_pe.launch.sampling import data_epoch, use_global_order


def set_device(trainer):
    """rc10's `_set_device`, with CPU for distributed runs without CUDA."""
    config = trainer.config
    trainer.local_rank = config.device_id
    trainer.distributed = config.distributed.init_method is not None and get_world_size() > 1
    registry.register("global_device", trainer.local_rank)
    if torch.cuda.is_available():
        trainer.device = torch.device("cuda", trainer.local_rank) if trainer.distributed else torch.device("cuda")
    else:
        trainer.device = torch.device("cpu")
    registry.register("current_device", trainer.device)


def wrap_model(trainer):
    """Wrap the model in DDP for a distributed run (CPU or CUDA). Returns False when not distributed."""
    if not trainer.distributed:
        return False
    model = trainer.model
    find_unused = bool(trainer.config.training.get("find_unused_parameters", False))
    on_cuda = trainer.device.type == "cuda"
    trainer.model = torch.nn.parallel.DistributedDataParallel(
        model,
        device_ids=[trainer.device.index] if on_cuda else None,
        output_device=trainer.device.index if on_cuda else None,
        find_unused_parameters=find_unused,
    )
    registry.register("distributed", True)
    trainer.writer.write(describe(model, find_unused))
    return True


def describe(model, find_unused):
    trained = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in model.parameters())
    return (f"DDP over {get_world_size()} processes ({torch.distributed.get_backend()}): all-reduces "
            f"{sum(p.numel() for p in trained):,} trained parameters in {len(trained)} tensors, skips "
            f"{total - sum(p.numel() for p in trained):,} frozen; find_unused_parameters={find_unused}")


def use_global_sample_order(trainer):
    """The training loaders draw the same global batches whatever the number of processes (sampling.py)."""
    if not trainer.config.training.get("global_sample_order", True):
        return
    world_size = get_world_size()
    seed = trainer.config.training.seed
    seed = seed if seed is not None and seed >= 0 else 0
    # with `training.seed=-1` every rank drew its own seed: the permutation must be rank 0's
    seed = broadcast_scalar(seed, src=0, device=trainer.device)
    use_global_order(
        trainer.dataset_loader.train_dataset, seed, get_rank(), world_size,
        lambda: data_epoch(registry.get("current_epoch", 1, no_warning=True), world_size),
    )
