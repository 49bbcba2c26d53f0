"""A served folder with several bases, from real tiny MMF runs: a VisualBERT base (`base/`) beside one frozen_vl base
per encoder class (`bases/<encoder>/`), each written by the apps (`export-base`, `export-adapter`), and the offline
scores `mmf_pe evaluate` wrote for the same memes."""
import csv
import json
import os

from mmf_pe_testing import reset_mmf_state, write_run_config

FC = []
PE = ["model_config.frozen_vl.training_mode=pe", "model_config.frozen_vl.embedding_cache.enabled=False"]
# adapter name -> (projects/frozen_vl config, tiny encoder (its base's name), extra options)
VL_ADAPTERS = {
    "clip_fc": ("hmd_clip_concat.yaml", "clip", FC),
    "clip_ia3": ("hmd_clip_cross.yaml", "clip", PE + ["model_config.frozen_vl.pe.method=ia3"]),
    "blip_lora": ("hmd_blip_concat.yaml", "blip", PE + ["model_config.frozen_vl.pe.method=lora"]),
    "blip_itm_fc": ("hmd_blip_itm_concat.yaml", "blip_itm", FC),
    "blip2_opt_fc": ("hmd_blip2_concat.yaml", "blip2", FC),
    "blip2_t5_lora": ("hmd_blip2_t5_concat.yaml", "blip2_t5", PE + ["model_config.frozen_vl.pe.method=lora"]),
    "clip_pe_fc": ("hmd_concat.yaml", "clip", FC),  # model=clip_pe (projects/clip_pe), the CLIP member's own name
}
CLIP_PE = {"clip_pe_fc"}


def model_of(name):
    return "clip_pe" if name in CLIP_PE else "frozen_vl"


def base_of(name):
    """The base folder an adapter of VL_ADAPTERS is served from (`bases/<this>/`)."""
    return "clip_pe" if name in CLIP_PE else VL_ADAPTERS[name][1]
SPLIT = "test_seen"


def train_and_evaluate(vl_hmd, config, encoder, options, root, model="frozen_vl"):
    """A 2-update MMF run in this process, then `mmf_pe evaluate` on test_seen: (run dir, {id: probability})."""
    from mmf_cli.run import run as mmf_run

    from mmf_pe.experiments.evaluate import evaluate_run

    save_dir = os.path.join(root, "runs", f"{encoder}_{len(os.listdir(os.path.join(root, 'runs')))}")
    dir_key = "clip_dir" if model == "clip_pe" else "encoder_dir"
    opts = [f"config={write_run_config(os.path.join(root, 'configs'), config, project=model)}",
            f"model={model}", "dataset=hateful_memes", f"env.save_dir={save_dir}",
            f"env.data_dir={vl_hmd['data_dir']}",
            f"model_config.{model}.{dir_key}={vl_hmd[encoder + '_dir']}", "training.max_updates=2",
            "training.evaluation_interval=2", "training.checkpoint_interval=2", *options]
    reset_mmf_state()
    try:
        mmf_run(opts)
        reset_mmf_state()
        evaluate_run(save_dir, [SPLIT])
    finally:
        reset_mmf_state()
    with open(os.path.join(save_dir, "logs", "predictions", f"{SPLIT}.csv")) as f:
        return save_dir, {int(row["id"]): float(row["proba"]) for row in csv.DictReader(f)}


def memes(vl_hmd, split=SPLIT):
    """[(id, text, image bytes)] of a split of the generated memes."""
    folder = os.path.join(vl_hmd["data_dir"], "datasets", "hateful_memes", "defaults")
    with open(os.path.join(folder, "annotations", f"{split}.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    out = []
    for record in records:
        with open(os.path.join(folder, "images", record["img"]), "rb") as f:
            out.append((record["id"], record["text"], f.read()))
    return out


def make_multi_base_folder(root, vl_hmd):
    """<root>/served: base/ = a tiny VisualBERT (+ its PE adapter `vb_pe`), bases/<encoder>/ per VL_ADAPTERS encoder,
    each adapter exported from its run; returns {"served", "offline": {adapter: {id: p}}, "runs": {adapter: dir}}."""
    from mmf_pe.experiments.export import export
    from mmf_pe.serve.base_export import export_base
    from mmf_pe.serve.layout import save_base
    from mmf_pe.testing.tiny_hmd import write_tokenizer
    from tests.serve.helpers import MAX_SEQ, build, export_adapter

    served = os.path.join(root, "served")
    os.makedirs(os.path.join(root, "runs"), exist_ok=True)
    visual_bert = build("fc", seed=0)
    save_base(visual_bert, served, write_tokenizer(os.path.join(root, "tokenizer")), max_seq_length=MAX_SEQ)
    export_adapter(visual_bert, os.path.join(served, "vb_pe"), "pe", seed=2)
    offline, runs = {}, {}
    for name, (config, encoder, options) in VL_ADAPTERS.items():
        runs[name], offline[name] = train_and_evaluate(vl_hmd, config, encoder, options, root, model_of(name))
        if not os.path.isdir(os.path.join(served, "bases", base_of(name))):
            export_base(runs[name], served, name=base_of(name))
        export(runs[name], os.path.join(served, name))
    return {"root": root, "served": served, "offline": offline, "runs": runs, "visual_bert": visual_bert}
