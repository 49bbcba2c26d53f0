"""Mixed-adapter batches on the frozen_vl bases (issue 25): FC heads and LoRA / IA3 on the frozen encoders of CLIP,
BLIP and BLIP-2, each adapter beside a second version of itself, in one forward pass, equal to one at a time."""
import os

import numpy as np
import pytest

from tests.serve.contract_helpers import VL_ADAPTERS, memes
from tests.serve.test_frozen_vl import another_fc_head


@pytest.mark.parametrize("name", sorted(VL_ADAPTERS))
def test_a_frozen_vl_mixed_batch_equals_one_at_a_time(vl_served, vl_hmd, name):
    from mmf_pe.serve.engine import Engine

    engine = Engine(vl_served["served"], embedding_cache_mb=0)
    first = engine.read_folder_version(name)
    second = engine.read_version(f"{name}_2", *another_fc_head(os.path.join(vl_served["served"], name)), name)
    assert second.kind is first.kind and first.kind.mixed is not None, first.kind.mixed_refusal
    rows = [first, second, second, first]
    picked = memes(vl_hmd)[:4]
    texts, inputs = [t for _, t, _ in picked], [{"image": image} for _, _, image in picked]
    mixed, switched = engine.score_batch(rows, texts, inputs)
    alone = [engine.score(v, [t], [x])[0][0] for v, t, x in zip(rows, texts, inputs)]
    assert switched is False
    np.testing.assert_allclose(mixed, alone, rtol=0, atol=1e-5)
    assert abs(mixed[0] - vl_served["offline"][name][picked[0][0]]) < 1e-5  # `mmf_pe evaluate`'s score


def test_fan_out_heads_on_one_meme_run_the_frozen_encoder_once(vl_served, vl_hmd, monkeypatch):
    """Several FC heads on one image in one mixed batch: the embedding cache computes image and text once."""
    from mmf_pe.serve.engine import Engine

    engine = Engine(vl_served["served"], embedding_cache_mb=1)
    heads = [engine.read_folder_version("clip_fc")]
    heads += [engine.read_version(f"clip_fc_{seed}", *another_fc_head(os.path.join(vl_served["served"], "clip_fc"),
                                                                      seed), "clip_fc") for seed in (3, 4, 5)]
    spec = heads[0].kind.mixed.spec  # shared with the skeleton (only the module tree is copied)
    encoded, encode = [], spec.encode

    def counting(backbone, names, pixels, *rest):
        encoded.append((tuple(names), pixels.shape[0]))
        return encode(backbone, names, pixels, *rest)

    monkeypatch.setattr(spec, "encode", counting)
    _, text, image = memes(vl_hmd)[1]
    scores, _ = engine.score_batch(heads, [text] * 4, [{"image": image}] * 4)
    assert encoded and all(rows == 1 for _, rows in encoded), encoded  # each stream encoded for one row, not four
    collated = []
    monkeypatch.setattr(heads[0].base, "collate", lambda texts, items, c=heads[0].base.collate: (
        collated.append(len(items)), c(texts, items))[1])
    again, _ = engine.score_batch(heads, [text] * 4, [{"image": image}] * 4)
    assert collated == [1] and again == scores  # one meme, four heads: prepared and collated once
    assert len(set(scores)) == 4
    np.testing.assert_allclose(scores, [engine.score(h, [text], [{"image": image}])[0][0] for h in heads], atol=1e-5)


def test_heads_and_encoder_methods_of_one_frozen_base_share_a_batch(vl_served, vl_hmd):
    """An FC head (concat fusion) and IA3 in the CLIP encoder under a cross-attention head, on one CLIP base, rows
    interleaved in one forward pass: each row as its adapter alone."""
    from mmf_pe.serve.engine import Engine

    engine = Engine(vl_served["served"], embedding_cache_mb=0)
    fc, ia3 = engine.read_folder_version("clip_fc"), engine.read_folder_version("clip_ia3")
    assert fc.kind is not ia3.kind and engine.batch_group(fc) is engine.batch_group(ia3)
    # fan-out: FC heads take one encoding of a meme (the head is the first stage run per row); IA3 sits in the
    # encoder, so its batches run every row through it
    assert fc.kind.mixed_expand_from == 0 and ia3.kind.mixed_expand_from is None
    rows = [fc, ia3, ia3, fc]
    picked = memes(vl_hmd)[:4]
    texts, inputs = [t for _, t, _ in picked], [{"image": image} for _, _, image in picked]
    mixed, switched = engine.score_batch(rows, texts, inputs)
    alone = [engine.score(v, [t], [x])[0][0] for v, t, x in zip(rows, texts, inputs)]
    assert switched is False
    np.testing.assert_allclose(mixed, alone, rtol=0, atol=1e-5)
