"""Look-alike letters and invisible characters are folded; `none` leaves text as it was; unknown modes are refused."""
import pytest

from mmf_pe.utils.text_normalization import check_mode, mode_of_run_config, normalize_text

PLAIN = "they look like hate"
DISGUISED = "th\u0435y l\u043e\u043ek \u200bli\u200dke \u202eh\u0430te\u2066"  # Cyrillic е о а, zero-width, bidi


def test_a_homoglyph_and_zero_width_caption_normalises_to_its_plain_twin():
    assert DISGUISED != PLAIN
    assert normalize_text(DISGUISED) == PLAIN
    assert normalize_text("\uff48\uff41\uff54\uff45 \U0001d421\U0001d41a\U0001d42d\U0001d41e") == "hate hate"  # NFKC


def test_none_leaves_text_unchanged_and_plain_text_stays_as_it_is():
    assert normalize_text(DISGUISED, "none") == DISGUISED
    assert normalize_text("café ❤ 😀") == "café ❤ 😀"


def test_unknown_mode_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="text_processor.params.text_normalization: unknown text normalisation 'nfc'"):
        mode_of_run_config({"dataset_config": {"hm": {"processors": {"text_processor": {
            "params": {"text_normalization": "nfc"}}}}}})
    assert check_mode(None) == "none"
    assert mode_of_run_config({"dataset_config": {"hm": {"processors": {"text_processor": {"params": {}}}}}}) == "none"
