"""The demo's runs, shared by the pipeline (which trains them) and the report (which labels them)."""

# run name -> (project config, label in the report)
RUNS = {
    "fc": ("demo_fc.yaml", "fc"),
    "full": ("demo_full.yaml", "full"),
    "pe": ("demo_pe.yaml", "pe/paper"),
    "text_only": ("demo_text.yaml", "text-only (full, no image)"),
}
