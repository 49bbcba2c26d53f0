"""Pre-flight data checks: a missing or malformed file is reported with its path, line and the command that makes it,
before MMF fails deep inside a DataLoader (or tries to download)."""
import json
import os

# How to make a missing file when the dataset's config has no `data_hints` (each dataset's YAML says it for itself).
DEFAULT_HINTS = {
    "annotations": "Create it in MMF's jsonl layout (one JSON object per line).",
    "features": "Extract region features with `mmf_pe extract --images <images dir> --out <this path>`.",
}


class DataCheckError(FileNotFoundError):
    pass


def _paths(dataset_config, attribute, split):
    node = dataset_config.get(attribute, None)
    if node is None or node.get(split, None) is None:
        return []
    paths = node[split]
    paths = [paths] if isinstance(paths, str) else list(paths)
    return [os.path.join(dataset_config.data_dir, p) for entry in paths for p in entry.split(",")]


def check_jsonl(path, required=("id", "text")):
    """Every line must be a JSON object with the required keys; names the file and line otherwise."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataCheckError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise DataCheckError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            missing = [key for key in required if key not in record]
            if missing:
                raise DataCheckError(f"{path}:{number}: record lacks {', '.join(missing)}")


def data_hints(dataset_config):
    """{kind of file: how to make it}, from the dataset config's own `data_hints` over the generic ones."""
    own = dataset_config.get("data_hints", None) or {}
    return {**DEFAULT_HINTS, **{key: str(value) for key, value in own.items() if value}}


def check_dataset(name, dataset_config, splits=("train", "val", "test")):
    hints = data_hints(dataset_config)
    problems = []
    for split in splits:
        for path in _paths(dataset_config, "annotations", split):
            if not os.path.isfile(path):
                problems.append(f"{name} {split}: missing annotations {path}\n  -> {hints['annotations']}")
            else:
                try:
                    check_jsonl(path)
                except DataCheckError as exc:
                    problems.append(f"{name} {split}: {exc}")
        if dataset_config.get("use_features", False):
            for path in _paths(dataset_config, "features", split):
                if not os.path.exists(path):
                    problems.append(f"{name} {split}: missing features {path}\n  -> {hints['features']}")
                elif _interrupted_extraction(path):
                    problems.append(
                        f"{name} {split}: features {path} are an interrupted `mmf_pe extract` run (state 'running')\n"
                        "  -> run the same `mmf_pe extract` command again; it resumes where it stopped")
    tokenizer = _tokenizer_path(dataset_config)
    if _text_processor_type(dataset_config) == "bert_tokenizer" and tokenizer and os.sep in tokenizer \
            and not os.path.isdir(tokenizer):
        problems.append(
            f"{name}: tokenizer directory {tokenizer} does not exist\n  -> put a BERT tokenizer there (vocab.txt, "
            "tokenizer_config.json), e.g. bert-base-uncased under $MMF_PE_WEIGHTS_DIR, or override "
            f"dataset_config.{name}.processors.text_processor.params.tokenizer_config.type. Nothing is downloaded."
        )
    return problems


def _interrupted_extraction(path):
    """`mmf_pe extract` marks its LMDB 'running' until every image is done (mmf_pe/extraction/store.py)."""
    state_file = os.path.join(path, "extraction.json")
    if not os.path.isfile(state_file):
        return False
    try:
        with open(state_file) as f:
            return json.load(f).get("state") == "running"
    except (OSError, ValueError):
        return False


def _text_processor_type(dataset_config):
    try:
        return str(dataset_config.processors.text_processor.type)
    except Exception:
        return None


def _tokenizer_path(dataset_config):
    try:
        return str(dataset_config.processors.text_processor.params.tokenizer_config.type)
    except Exception:
        return None


def check_config_data(config):
    """Check every dataset named in the run's config; raise one error listing all problems."""
    datasets = config.datasets
    names = [d.strip() for d in datasets.split(",")] if isinstance(datasets, str) else list(datasets or [])
    problems = []
    for name in names:
        dataset_config = config.dataset_config.get(name, None)
        if dataset_config is not None:
            problems += check_dataset(name, dataset_config)
    if problems:
        raise DataCheckError("data is missing or malformed:\n" + "\n".join(problems))


def check_pretrained_checkpoint(config):
    """`checkpoint.resume_file` must exist when set (MMF would fail later with a bare RuntimeError)."""
    path = config.checkpoint.get("resume_file", None)
    if path and not os.path.isfile(str(path)):
        raise DataCheckError(
            f"checkpoint.resume_file {path} does not exist.\n  -> For the paper's recipe put MMF's COCO-pretrained "
            "VisualBERT (model zoo key visual_bert.pretrained.coco, file model.pth) at "
            "$MMF_PE_WEIGHTS_DIR/visual_bert_coco/model.pth, or start from BERT only with "
            "checkpoint.resume_file=None checkpoint.resume_pretrained=False (MMF's command line spells null as None). "
            "Nothing is downloaded."
        )
