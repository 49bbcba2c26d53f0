"""The safe record reader on LMDB-sized buffers (read in place, issue 18 item 4): same records as pickle, nothing
kept pointing into the buffer, hostile and truncated records still refused with the place named."""
import os
import pickle

import numpy as np
import pytest

from mmf_pe.utils import safe_pickle
from tests.data.helpers import Hostile

FEATURES = np.random.default_rng(0).normal(size=(100, 2048)).astype(np.float32)  # 800 KB: the buffer path


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_large_record_read_from_a_buffer_equals_pickle_and_owns_its_data(protocol):
    record = {"features": FEATURES, "bbox": np.zeros((100, 4), np.float16), "num_boxes": 100, "name": "x" * 300,
              "objects": [1, (2, 3)], "raw": b"\x00\n" * 200, "score": np.float32(0.5)}
    buffer = bytearray(pickle.dumps(record, protocol=protocol))
    loaded = safe_pickle.loads(memoryview(buffer), where="features.lmdb key '1'")
    assert loaded.keys() == record.keys() and np.array_equal(loaded["features"], FEATURES)
    assert loaded["bbox"].dtype == np.float16 and loaded["objects"] == [1, (2, 3)] and loaded["raw"] == record["raw"]
    buffer[:] = bytes(len(buffer))  # the LMDB page is gone once its transaction ends
    assert np.array_equal(loaded["features"], FEATURES) and loaded["name"] == record["name"]


def test_a_hostile_or_truncated_large_record_in_a_buffer_is_refused(tmp_path):
    marker = str(tmp_path / "created")
    hostile = memoryview(pickle.dumps({"features": FEATURES, "bbox": Hostile(marker)}))
    with pytest.raises(safe_pickle.UnsafeRecordError, match="features.lmdb key '7': refused to unpickle io.open"):
        safe_pickle.loads(hostile, where="features.lmdb key '7'")
    assert not os.path.exists(marker)
    cut = memoryview(pickle.dumps({"features": FEATURES}))[:300_000]
    with pytest.raises(safe_pickle.UnsafeRecordError, match="key '8': not a readable pickled record"):
        safe_pickle.loads(cut, where="features.lmdb key '8'")
