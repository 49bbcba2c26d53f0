"""Import every mmf-pe component so that it registers with MMF's registry.

Imported by MMF's `setup_imports()` through the compatibility layer (no MMF_USER_DIR needed), or as a user dir.
"""
import mmf_pe.datasets.mmh.builder  # noqa: F401
import mmf_pe.models.clip_pe  # noqa: F401
import mmf_pe.models.frozen_vl  # noqa: F401
import mmf_pe.models.text_processors  # noqa: F401
import mmf_pe.models.visual_bert_pe  # noqa: F401
import mmf_pe.trainers.mmf_pe_trainer  # noqa: F401
