"""The embedding cache moved to the frozen-encoder family (mmf_pe.models.frozen_vl.cache); this name still works."""
from mmf_pe.models.frozen_vl.cache import (  # noqa: F401
    FORMAT_VERSION,
    EmbeddingCache,
    cache_fingerprint,
    image_keys,
    text_keys,
)
