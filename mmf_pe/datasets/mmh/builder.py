"""Registered MMF builder `mmh` (dataset=mmh): converted MMHS150K + region features; it never downloads.

Before loading a split it checks that the annotations and the feature LMDB exist and that the LMDB holds every
tweet, naming the missing file or ids and the command that makes them; after loading it prints the split's size and
positive rate under the label rule in use.
"""
import os

from mmf.common.registry import registry
from mmf.datasets.mmf_dataset_builder import MMFDatasetBuilder

from mmf_pe import PACKAGE_DIR
from mmf_pe.data.checks import DataCheckError, check_dataset, data_hints
from mmf_pe.data.lmdb_features import read_keys
from mmf_pe.datasets.mmh import labels as label_rules
from mmf_pe.datasets.mmh.dataset import MMHFeaturesDataset

NAME = "mmh"


@registry.register_builder(NAME)
class MMHBuilder(MMFDatasetBuilder):
    def __init__(self, dataset_name=NAME, dataset_class=MMHFeaturesDataset, *args, **kwargs):
        super().__init__(dataset_name, dataset_class, *args, **kwargs)

    @classmethod
    def config_path(cls):
        return os.path.join(PACKAGE_DIR, "configs", "datasets", NAME, "defaults.yaml")

    def build(self, config, dataset_type="train", *args, **kwargs):
        # No zoo download (MMFDatasetBuilder.build would try one): only check that the files are there.
        problems = check_dataset(NAME, config, splits=(dataset_type,))
        if problems:
            raise DataCheckError("mmh data is missing or malformed:\n" + "\n".join(problems))

    def load(self, config, dataset_type="train", *args, **kwargs):
        dataset = super().load(config, dataset_type, *args, **kwargs)
        if dataset is None:
            return None
        for part in dataset.datasets:
            _check_feature_keys(part, config, dataset_type)
            _report(part, dataset_type)
        return dataset

    def update_registry_for_model(self, config):
        if hasattr(self.dataset, "text_processor") and hasattr(self.dataset.text_processor, "get_vocab_size"):
            registry.register(f"{NAME}_text_vocab_size", self.dataset.text_processor.get_vocab_size())
        registry.register(f"{NAME}_num_final_outputs", 2)


def _check_feature_keys(dataset, config, dataset_type):
    """Every tweet of the split must have features (a missing key is otherwise a bare KeyError mid-epoch)."""
    path = dataset._get_path_based_on_index(config, "features", dataset._index)
    keys = set(read_keys(path))
    missing = [r["id"] for r in dataset.annotation_db.data if r["id"] not in keys]
    if missing:
        hint = data_hints(config)["features"]
        raise DataCheckError(
            f"mmh {dataset_type}: {len(missing)} of {len(dataset.annotation_db.data)} tweets have no features in "
            f"{path}, e.g. {', '.join(missing[:5])}\n  -> {hint} (a resumed extraction adds what is missing; images "
            "the extractor could not decode are listed in its failures report: drop those tweets from the "
            "annotations or fix the images)."
        )


def _report(dataset, dataset_type):
    total, positives = len(dataset), dataset.positives()
    message = (f"mmh {dataset_type}: {total} tweets, {label_rules.rate(positives, total).strip()} positive "
               f"(label rule: {dataset.rule_name})")
    if dataset.left_out:
        message += f"; {dataset.left_out} tweets left out: the rule has no answer for them (annotators all differ)"
    writer = registry.get("writer", no_warning=True)
    if writer is not None:
        writer.write(message)
    else:
        print(message)
