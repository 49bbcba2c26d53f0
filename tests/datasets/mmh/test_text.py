from mmf_pe.datasets.mmh.text import OCR_SEPARATOR, clean, join

TWEET = "@bob_1 RT  this &amp; that\nhttps://t.co/AbC123 email a@b.com 😂 #tag www.example.com/x"


def test_default_drops_urls_and_anonymises_mentions():
    assert clean(TWEET) == "@user RT this & that email a@b.com 😂 #tag"


def test_url_and_mention_choices():
    assert clean(TWEET, urls="token", mentions="drop") == "RT this & that url email a@b.com 😂 #tag url"
    kept = clean(TWEET, urls="keep", mentions="keep")
    assert "https://t.co/AbC123" in kept and "@bob_1" in kept


def test_join_tweet_and_ocr():
    assert join("tweet", "ocr words") == "tweet" + OCR_SEPARATOR + "ocr words"
    assert join("tweet", "") == "tweet"
    assert join("", "ocr") == "ocr"
