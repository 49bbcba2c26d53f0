"""Reports from local run files: Table I (parameters per mode), Table II (AUROC / accuracy / F1 per dataset x mode x
split, mean ± std over seeds), PNG plots. Reads only metrics.jsonl and prediction CSVs (mmf_pe.tracking schema).

    from mmf_pe.reporting import build_report
    paths = build_report(["save/hmd_fc", "save/hmd_pe"], "report/")   # {"markdown": ..., "plots": [...], ...}
"""
from mmf_pe.reporting.report import build_report
from mmf_pe.reporting.runs import Run, find_runs, load_run
from mmf_pe.reporting.tables import table1_rows, table2_rows

__all__ = ["Run", "build_report", "find_runs", "load_run", "table1_rows", "table2_rows"]
