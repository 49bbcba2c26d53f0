"""The `mmh` dataset: one converted tweet -> tokens, region features and a binary target.

Tweet ids have 18-19 digits. They stay strings in the annotations and the LMDB keys, travel through MMF's batches as
int64 tensors (exact for every tweet id; rc10's hateful-memes dataset used int32, which overflows) and come back
as strings in predictions, so nothing loses a digit on the way.

`time_split` (see projects/visual_bert_pe/mmh_time_*.yaml): each split's annotation entry is then a pool of files
(comma-joined, MMF's multi-file form); the pool is ordered by posting time (`timestamp_ms`, ties by id) and this
split keeps its slice: the earliest fractions.train, the next fractions.val, the latest rest for test. The
boundaries are printed and written to `<save_dir>/time_split.json`.
"""
import json
import os

import torch
from mmf.common.sample import Sample
from mmf.datasets.databases.annotation_database import AnnotationDatabase
from mmf.datasets.mmf_dataset import MMFDataset

from mmf_pe.data.timeline import describe_split, read_timed_jsonl, split_by_time
from mmf_pe.datasets.mmh import labels as label_rules
from mmf_pe.utils.io import atomic_write_text

TIME_SPLIT_FILE = "time_split.json"


class TimeSliceAnnotations(AnnotationDatabase):
    """MMF's annotation database over records already read and sliced by time (not loaded from one file)."""

    def __init__(self, config, records):
        torch.utils.data.Dataset.__init__(self)
        self.metadata, self.config, self.start_idx, self.data = {}, config, 0, records


class MMHFeaturesDataset(MMFDataset):
    def __init__(self, config, *args, dataset_name="mmh", **kwargs):
        super().__init__(dataset_name, config, *args, **kwargs)
        if not self._use_features:
            raise ValueError("dataset_config.mmh.use_features must be true: mmh reads region features from an LMDB")
        self.label_rule = config.get("label_rule", None)
        if self.label_rule is not None and self.label_rule not in label_rules.RULES:
            raise ValueError(f"dataset_config.mmh.label_rule={self.label_rule!r}; choose null (the `label` written "
                             f"by mmf_pe convert-mmh) or one of {', '.join(label_rules.RULES)}")
        records = self.annotation_db.data
        path = self._get_path_based_on_index(config, "annotations", self._index)
        for number, record in enumerate(records, start=1):
            tweet_id = str(record.get("id", ""))
            if not tweet_id.isdigit() or int(tweet_id) >= 2**63:
                raise ValueError(f"{path}:{number}: id {record.get('id')!r} is not a tweet id (digits, < 2**63); "
                                 "make the annotations with mmf_pe convert-mmh")
        targets = [self._target(record) for record in records]
        # Tweets the rule has no answer for (only `majority`, all three annotators differ) cannot train or score.
        self.left_out = sum(1 for t in targets if t is None)
        self.annotation_db.data = [
            dict(r, _target=t, feature_path=f"{r['id']}.npy") for r, t in zip(records, targets) if t is not None
        ]

    def _build_annotation_db(self):
        """MMF's annotation db, or under `time_split` this split's time slice of the pooled annotation files."""
        time_split = self.config.get("time_split", None)
        if not time_split:
            return super()._build_annotation_db()
        pool = self._get_path_based_on_index(self.config, "annotations", self._index).split(",")
        parts, summary = split_by_time(read_timed_jsonl(pool), dict(time_split.get("fractions", {})))
        summary["pool"] = pool
        self.time_split_summary = summary
        _announce(summary, self.dataset_type)
        return TimeSliceAnnotations(self.config, [record for _, record, _ in parts[self.dataset_type]])

    def _target(self, record):
        if self.label_rule is None:
            return record.get("label", None)
        if "labels" not in record:
            raise ValueError(f"mmh record {record.get('id')!r} has no annotator `labels` to apply label_rule="
                             f"{self.label_rule} to; re-run mmf_pe convert-mmh")
        return label_rules.binary_label(record["labels"], self.label_rule)

    @property
    def rule_name(self):
        if self.label_rule is not None:
            return self.label_rule
        records = self.annotation_db.data
        return records[0].get("label_rule", "as in the annotations") if records else "as in the annotations"

    def positives(self):
        return sum(record["_target"] for record in self.annotation_db.data)

    def __getitem__(self, idx):
        record = self.annotation_db[idx]
        sample = Sample()
        processed = self.text_processor({"text": record["text"]})
        sample.text = processed["text"]
        if "input_ids" in processed:
            sample.update(processed)
        sample.id = torch.tensor(int(record["id"]), dtype=torch.long)
        sample.update(self.features_db.get(record))
        sample.targets = torch.tensor(record["_target"], dtype=torch.long)
        return sample

    def format_for_prediction(self, report):
        scores = torch.nn.functional.softmax(report.scores, dim=1)
        labels = scores.argmax(dim=1)
        return [
            {"id": str(int(tweet_id)), "proba": float(scores[i, 1]), "label": int(labels[i])}
            for i, tweet_id in enumerate(report.id.tolist())
        ]


def _announce(summary, dataset_type):
    """Print the boundaries once per split and store them with the run (the same content from every split)."""
    from mmf.common.registry import registry
    from mmf.utils.configuration import get_mmf_env

    message = f"mmh {dataset_type}: " + describe_split(summary)
    writer = registry.get("writer", no_warning=True)
    if writer is not None:
        writer.write(message)
    else:
        print(message)
    save_dir = get_mmf_env("save_dir")
    if save_dir:
        os.makedirs(save_dir, exist_ok=True)
        atomic_write_text(os.path.join(save_dir, TIME_SPLIT_FILE), json.dumps(summary, indent=2) + "\n")
