"""Faster R-CNN region features in MMF's feature LMDB layout (`mmf_pe extract`, `extract_features(...)`)."""


def extract_features(images, out, **kwargs):
    """See mmf_pe.extraction.runner.extract_features (imported lazily: torchvision loads only when used)."""
    from mmf_pe.extraction.runner import extract_features as run

    return run(images, out, **kwargs)


def merge_shards(shard_paths, out, **kwargs):
    """Join `--shard i/n` outputs into one LMDB; see mmf_pe.extraction.store.merge."""
    from mmf_pe.extraction.store import merge

    return merge(list(shard_paths), out, **kwargs)
