"""`normalized_bert_tokenizer`: MMF's `bert_tokenizer` with the caption normalised first (look-alike letters and
invisible characters; see mmf_pe.utils.text_normalization). params: those of `bert_tokenizer`, plus
`text_normalization` (`none` | `nfkc_confusables`; a config without the key gets `none`, as before the key existed).
"""
from mmf.common.registry import registry
from mmf.datasets.processors.bert_processors import BertTokenizer

from mmf_pe.utils.text_normalization import NONE, check_mode, normalize_text

NAME = "normalized_bert_tokenizer"


@registry.register_processor(NAME)
class NormalizedBertTokenizer(BertTokenizer):
    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self.text_normalization = check_mode(config.get("text_normalization", NONE), f"{NAME}: text_normalization")

    def __call__(self, item):
        if "text" in item:
            item = dict(item, text=normalize_text(item["text"], self.text_normalization))
        return super().__call__(item)
