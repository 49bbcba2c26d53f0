"""Feature provenance: which detector settings produced the region features an adapter was trained on.

An adapter only scores images correctly when the server's detector makes the same features as training did, so
`mmf_pe export-adapter` records them (from `<features>.lmdb/extraction.json`, written by `mmf_pe extract`) and
`mmf_pe serve` compares them with its own detector's. Plain JSON reading: no import of the extraction code.
"""
import json
import os

from mmf_pe.utils.hashing import file_sha256

STATE_FILE = "extraction.json"  # mmf_pe.extraction.store.STATE_FILE
# The settings that change the features; shard, run state and counts do not.
KEYS = ("detector", "feature_dim", "feature", "weights_sha256", "selection", "feature_dtype", "precision",
        "min_size", "max_size", "rpn_pre_nms_top_n", "rpn_post_nms_top_n", "normalisation")



def provenance_from_settings(settings, weights_sha256=None):
    """The comparable part of an extraction's settings (`extraction.json`'s `settings`, or a live detector's)."""
    weights = settings.get("weights")
    if weights_sha256 is None and weights and os.path.isfile(weights):
        weights_sha256 = file_sha256(weights)
    out = {key: settings.get(key) for key in KEYS if key in settings}
    out["weights_sha256"] = weights_sha256  # None: random weights (tests) or the file is gone
    out.setdefault("normalisation", None)
    return out


def read_feature_provenance(lmdb_path):
    """Provenance of a feature LMDB written by `mmf_pe extract`, or None (features from elsewhere, e.g. MMF's zoo)."""
    state_path = os.path.join(str(lmdb_path), STATE_FILE)
    if not os.path.isfile(state_path):
        return None
    with open(state_path) as f:
        try:
            state = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{state_path}: line {error.lineno}: not valid JSON ({error.msg})") from None
    if state.get("state") != "complete":
        raise ValueError(f"{state_path}: extraction state is {state.get('state')!r}, not 'complete'")
    provenance = provenance_from_settings(state.get("settings") or {}, state.get("weights_sha256"))
    provenance["lmdb"] = os.path.abspath(str(lmdb_path))
    return provenance


def provenance_differences(adapter, server):
    """{key: (adapter's, server's)} over the settings that change features (the LMDB path is not one)."""
    keys = [key for key in KEYS if key in adapter or key in server]
    return {key: (adapter.get(key), server.get(key)) for key in keys if adapter.get(key) != server.get(key)}


def features_from_run_config(config, data_dir=None):
    """The first training feature LMDB a run's config names (dataset_config.<dataset>.features.train), or None."""
    datasets = str(config.get("datasets") or config.get("dataset") or "").split(",")
    dataset_configs = config.get("dataset_config") or {}
    for name in [d.strip() for d in datasets if d.strip()] or list(dataset_configs):
        dataset = dataset_configs.get(name) or {}
        features = (dataset.get("features") or {}).get("train")
        if not features:
            continue
        first = str(features[0] if isinstance(features, (list, tuple)) else features).split(",")[0]
        env_root = data_dir or os.environ.get("MMF_DATA_DIR") or (config.get("env") or {}).get("data_dir")
        roots = [dataset.get("data_dir"), env_root and os.path.join(str(env_root), "datasets"), env_root]
        for root in [str(r) for r in roots if r and "${" not in str(r)]:
            for candidate in (os.path.join(root, first),):
                if os.path.isdir(candidate):
                    return candidate
        if os.path.isdir(first):
            return first
    return None
