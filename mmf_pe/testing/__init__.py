"""Generated data and tiny models for tests, benchmarks and the demo: HMD / MMHS150K layouts with features, and tiny
random CLIP / BLIP / BLIP-2 encoders with their tokenizers and processors. Nothing here is imported by a training,
evaluation or serving path; it is kept in the package (not in tests/) because the demo and the benchmark scripts
generate their data with it too."""
