"""The `mmh` dataset: one converted tweet -> tokens, region features and a binary target.

Tweet ids have 18-19 digits. They stay strings in the annotations and the LMDB keys, travel through MMF's batches as
int64 tensors (exact for every tweet id; rc10's hateful-memes dataset used int32, which overflows) and come back
as strings in predictions, so nothing loses a digit on the way.
"""
import torch
from mmf.common.sample import Sample
from mmf.datasets.mmf_dataset import MMFDataset

from mmf_pe.datasets.mmh import labels as label_rules


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
