"""Every projects/frozen_vl row config resolves (MMF's includes) to the source row's recipe."""
import glob
import os

import pytest

from tests.models.frozen_vl.helpers import PROJECT

# config -> (encoder, fusion, map_dim, mapping layers, batch, lr, updates = epochs x updates per epoch)
ROWS = {
    "hmd_clip_concat_map32.yaml": ("clip", "concat", 32, 1, 16, 1e-4, 15 * 532),
    "hmd_clip_concat.yaml": ("clip", "concat", 1024, 1, 64, 1e-4, 15 * 133),
    "hmd_clip_cross.yaml": ("clip", "cross", 1024, 1, 64, 1e-4, 20 * 133),
    "hmd_clip_cross_laion.yaml": ("clip", "cross", 1024, 1, 64, 1e-4, 20 * 133),
    "hmd_blip_concat.yaml": ("blip", "concat", 32, 5, 16, 5e-4, 10 * 532),
    "hmd_blip_cross.yaml": ("blip", "cross", 32, 5, 16, 5e-4, 20 * 532),
    "hmd_blip_itm_concat.yaml": ("blip_itm", "concat", 1024, 1, 16, 5e-4, 10 * 532),
    "hmd_blip2_concat.yaml": ("blip2", "concat", 1024, 5, 8, 5e-4, 10 * 1063),
    "hmd_blip2_concat_logits.yaml": ("blip2", "concat", 1024, 5, 8, 5e-4, 10 * 1063),
    "hmd_blip2_t5_concat.yaml": ("blip2", "concat", 1024, 5, 8, 5e-4, 10 * 1063),
    "hmd_blip2_t5_concat_layer5.yaml": ("blip2", "concat", 1024, 5, 8, 5e-4, 10 * 1063),
}


def test_every_row_config_is_listed():
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(PROJECT, "hmd_*_*.yaml"))) == sorted(ROWS)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_row_recipe(name):
    from mmf.utils.configuration import load_yaml

    config = load_yaml(os.path.join(PROJECT, name))
    model = config.model_config.frozen_vl
    encoder, fusion, map_dim, mapping, batch_size, lr, updates = ROWS[name]
    assert (model.encoder, model.fusion, model.map_dim, model.num_mapping_layers) == (encoder, fusion, map_dim, mapping)
    assert (config.training.batch_size, config.optimizer.params.lr, config.training.max_updates) == (
        batch_size, pytest.approx(lr), updates)
    assert name.startswith(f"hmd_{encoder}_{fusion}") or name.startswith(f"hmd_{encoder}_t5_{fusion}")
    assert model.embedding_cache.enabled and model.training_mode == "fc"
    text_processor = config.dataset_config.hateful_memes.processors.text_processor.type
    assert text_processor == ("clip_tokenizer" if encoder == "clip" else "hf_tokenizer")


def test_blip2_variants():
    from mmf.utils.configuration import load_yaml
    from omegaconf import OmegaConf

    logits = load_yaml(os.path.join(PROJECT, "hmd_blip2_concat_logits.yaml")).model_config.frozen_vl.blip2
    layer5 = load_yaml(os.path.join(PROJECT, "hmd_blip2_t5_concat_layer5.yaml")).model_config.frozen_vl
    assert logits.text_features == "logits" and layer5.blip2.text_layer == 5
    assert OmegaConf.to_container(layer5, resolve=False)["encoder_dir"].endswith("/blip2-flan-t5-xl")
