"""Text normalisation against cheap evasion: look-alike letters and invisible characters (MMF-free).

A meme's caption reaches the tokenizer after `normalize_text(text, mode)`:

- `none`: unchanged (runs and exports made before normalisation existed: their scores stay the same);
- `nfkc_confusables`: invisible format characters removed (zero-width spaces / joiners, bidi controls, soft
  hyphens: Unicode category Cf), Unicode NFKC (fullwidth and styled letters -> plain ones), then every remaining
  non-ASCII character that Unicode's confusables list (as shipped by the maintained `confusable-homoglyphs`
  package) says looks like one ASCII character is replaced by it (Cyrillic `а` -> `a`, Greek `ο` -> `o`).

The mode is a config key (`text_normalization`) of every text processor and is recorded in adapter exports, so
training, evaluation, `mmf_predict` and the server all tokenise the same string. The confusables step also folds
whole words of Cyrillic / Greek text into Latin look-alikes: right for an English-language detector, not for others.
"""
import functools
import unicodedata

NONE = "none"
NFKC_CONFUSABLES = "nfkc_confusables"
MODES = (NONE, NFKC_CONFUSABLES)
DEFAULT_MODE = NFKC_CONFUSABLES  # what new runs' configs set; code reading an old config without the key uses NONE


def check_mode(mode, where="text_normalization"):
    """The mode, or a ValueError naming `where` and the modes there are. `None` means `none`."""
    mode = NONE if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"{where}: unknown text normalisation {mode!r}; use one of {', '.join(MODES)}")
    return mode


@functools.lru_cache(maxsize=1)
def confusables_map():
    """{non-ASCII character: the ASCII character it looks like}, from Unicode's confusables data."""
    from confusable_homoglyphs.confusables import confusables_data

    table = {}
    for character, homoglyphs in confusables_data.items():
        if len(character) != 1 or character.isascii():
            continue
        for homoglyph in homoglyphs:
            target = homoglyph.get("c", "")
            if len(target) == 1 and target.isascii() and target.isprintable() and not target.isspace():
                table[ord(character)] = target
                break
    return table


def _drop_invisible(text):
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


def normalize_text(text, mode=NFKC_CONFUSABLES):
    """`text` as the tokenizer should see it under `mode` (see the module docstring)."""
    if check_mode(mode) == NONE or not text:
        return text
    text = unicodedata.normalize("NFKC", _drop_invisible(text))
    if text.isascii():
        return text
    return _drop_invisible(text.translate(confusables_map()))


def mode_of_run_config(config):
    """The `text_normalization` of a run config's text processor (a dict or DictConfig); `none` when it has none."""
    for dataset in ((config or {}).get("dataset_config") or {}).values():
        processor = ((dataset or {}).get("processors") or {}).get("text_processor") or {}
        params = processor.get("params") or {}
        if params:
            return check_mode(params.get("text_normalization"), "text_processor.params.text_normalization")
    return NONE
