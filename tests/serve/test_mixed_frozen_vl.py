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
