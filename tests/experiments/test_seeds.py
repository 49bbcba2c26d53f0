"""`mmf_pe seeds`: one save dir per seed, completed seeds skipped, interrupted ones resumed."""
import json
import os

from mmf_pe.experiments.seeds import main, plan


def test_plan_skips_completed_and_resumes_partial(tmp_path):
    root = tmp_path / "runs"
    done = root / "seed_1" / "logs"
    done.mkdir(parents=True)
    (done / "metrics.jsonl").write_text(json.dumps({"event": "end", "status": "completed"}) + "\n")
    (root / "seed_2").mkdir()
    (root / "seed_2" / "current.ckpt").write_bytes(b"x")
    overrides = ["model=visual_bert_pe", "dataset=hateful_memes", f"env.save_dir={root}", "training.seed=9"]
    got_root, runs = plan("projects/x/hmd_pe.yaml", [1, 2, 3], overrides)
    assert got_root == str(root)
    assert [(seed, state) for seed, _, state, _ in runs] == [(1, "completed"), (2, "partial"), (3, "new")]
    seed2 = runs[1][3]
    assert f"env.save_dir={os.path.join(str(root), 'seed_2')}" in seed2 and "training.seed=2" in seed2
    assert "checkpoint.resume=True" in seed2 and "training.seed=9" not in seed2
    assert "training.wandb.name=hmd_pe-seed2" in seed2


def test_dry_run_prints_commands(capsys, tmp_path):
    assert main(["--config", "c.yaml", "--seeds", "4", "5", "model=m", "dataset=d", f"env.save_dir={tmp_path}",
                 "--evaluate", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("$ mmf_pe run config=c.yaml") == 2 and out.count("$ mmf_pe evaluate") == 2
    evaluate_lines = [line for line in out.splitlines() if "$ mmf_pe evaluate" in line]
    assert all("env.save_dir" not in line for line in evaluate_lines), "evaluate must not write into the seeds root"
