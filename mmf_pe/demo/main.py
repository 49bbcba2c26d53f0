"""Main job: a synthetic meme benchmark that only a multimodal model can solve; FC vs Full vs PE (+ a text-only
baseline) trained with the real `mmf_run`, evaluated on held-out splits, reported under logs/demo/report/.

    mmf_pe demo [--out logs/demo] [--preset demo|smoke] [--updates N] [--runs fc full pe text_only]

Rerunning reuses what is finished (data, features, finished runs); an interrupted run resumes.
"""
import argparse
import os

from mmf_pe import REPO_ROOT


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mmf_pe demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "logs", "demo"))
    parser.add_argument("--preset", default="demo", choices=["demo", "smoke"],
                        help="demo: the README's run (~15 min on 2 cores); smoke: seconds, tiny random model")
    parser.add_argument("--updates", type=int, default=None, help="training updates per run")
    parser.add_argument("--runs", nargs="+", default=None, choices=["fc", "full", "pe", "text_only"])
    parser.add_argument("--threads", default="auto",
                        help="CPU threads per process, also for the MMF runs (OMP_NUM_THREADS). auto: 1 when the "
                        "machine is already busy (load average >= cores; oversubscribed threads are several times "
                        "slower), else torch's default")
    args = parser.parse_args(argv)
    threads = _threads(args.threads)
    if threads:
        import torch

        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)

    from mmf_pe.demo.pipeline import log, run_demo, settings_for

    log(f"threads per process: {threads or 'torch default'} (--threads {args.threads})")

    settings = settings_for(args.preset, updates=args.updates, runs=tuple(args.runs) if args.runs else None)
    result = run_demo(args.out, settings)
    print("\nTable II (measured; detector weights are random, see the report):\n" + result["table2"], flush=True)
    log(f"report: {result['markdown']}")
    return 0


def _threads(value):
    if value != "auto":
        return int(value)
    if os.environ.get("OMP_NUM_THREADS"):
        return None  # the user's choice stands
    busy = hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or 1)
    return 1 if busy else None
