"""scripts/benchmark_pe.py still runs (tiny model, in process); its numbers are not asserted (no timing tests)."""
import importlib.util
import os
from types import SimpleNamespace

from mmf_pe import REPO_ROOT


def test_benchmark_rows_and_table_tiny():
    spec = importlib.util.spec_from_file_location("benchmark_pe", os.path.join(REPO_ROOT, "scripts", "benchmark_pe.py"))
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    settings = {"batch": 2, "tokens": 8, "regions": 4, "steps": 1, "warmup": 0, "threads": 0, "tiny": True}
    rows = [benchmark.run_row(dict(settings, row=row)) for row in ("full", "paper", "lora")]
    full, paper, lora = rows
    assert full["trainable"] == full["total"] and paper["trainable"] < full["trainable"]
    assert paper["export_bytes"] < full["export_bytes"] / 20
    assert 0 < paper["flops"] < full["flops"]  # no weight gradients for the frozen layers
    table = benchmark.format_table(rows, {"wall": 1e10, "cpu": 1e10}, SimpleNamespace(**settings))
    assert "| paper | " in table and "of the matmul limit" in table and "Targets (paper PE vs Full)" in table
