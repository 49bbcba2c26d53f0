"""Both families' training / evaluation text processors tokenise a disguised caption exactly as its plain twin when
`text_normalization: nfkc_confusables` is set, and as before (differently) without the key."""
import os

import pytest
import torch
from omegaconf import OmegaConf

PLAIN = "they look like hate"
DISGUISED = "th\u0435y l\u043e\u043ek \u200bli\u200dke \u202eh\u0430te\u2066"


def _ids(processor, text):
    out = processor({"text": text})
    return out["input_ids"].tolist() if torch.is_tensor(out["input_ids"]) else list(out["input_ids"])


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from mmf_pe.testing.tiny_hmd import write_tokenizer

    return write_tokenizer(str(tmp_path_factory.mktemp("tok")))


def _bert(tokenizer_dir, **extra):
    from mmf_pe.models.text_processors import NormalizedBertTokenizer

    return NormalizedBertTokenizer(OmegaConf.create({"tokenizer_config": {"type": tokenizer_dir, "params": {
        "do_lower_case": True}}, "mask_probability": 0, "max_seq_length": 16, **extra}))


def test_visual_bert_processor_scores_a_disguised_caption_as_its_plain_twin(tokenizer_dir):
    normalised = _bert(tokenizer_dir, text_normalization="nfkc_confusables")
    assert _ids(normalised, DISGUISED) == _ids(normalised, PLAIN)
    assert normalised({"text": DISGUISED})["text"] == normalised({"text": PLAIN})["text"]
    old = _bert(tokenizer_dir)  # a config saved before the key existed: unchanged behaviour
    assert _ids(old, DISGUISED) != _ids(old, PLAIN)


def test_hf_tokenizer_processor_scores_a_disguised_caption_as_its_plain_twin(tmp_path):
    from mmf_pe.models.frozen_vl.processors import HFTokenizerProcessor
    from mmf_pe.testing.tiny_vl import write_wordpiece_tokenizer

    directory = str(tmp_path / "wp")
    write_wordpiece_tokenizer(directory)
    open(os.path.join(directory, "config.json"), "w").write("{}")  # an encoder directory holds its config too
    config = {"tokenizer_config": {"type": directory}, "max_seq_length": 16}
    normalised = HFTokenizerProcessor(OmegaConf.create(dict(config, text_normalization="nfkc_confusables")))
    assert _ids(normalised, DISGUISED) == _ids(normalised, PLAIN)
    old = HFTokenizerProcessor(OmegaConf.create(config))
    assert _ids(old, DISGUISED) != _ids(old, PLAIN)
    with pytest.raises(ValueError, match="hf_tokenizer: text_normalization: unknown text normalisation 'nfd'"):
        HFTokenizerProcessor(OmegaConf.create(dict(config, text_normalization="nfd")))


def test_new_runs_normalise_by_default():
    """The dataset defaults and the frozen_vl / clip_pe project configs set the key (old saved configs lack it)."""
    import os

    from mmf_pe import PACKAGE_DIR

    root = os.path.dirname(PACKAGE_DIR)
    for path in ("mmf_pe/configs/mmf/datasets/hateful_memes/defaults.yaml", "mmf_pe/configs/datasets/mmh/defaults.yaml",
                 "projects/frozen_vl/hmd_base.yaml", "projects/clip_pe/hmd_base.yaml"):
        config = OmegaConf.load(os.path.join(root, path))
        dataset = next(iter(config.dataset_config.values()))
        assert dataset.processors.text_processor.params.text_normalization == "nfkc_confusables", path
