"""Run the whole pipeline on the embedded default (synthetic DVS gestures, shipped model), print
each prediction beside the true label, then accuracy, per-stage latency and energy per inference.

Each stage runs as its own process talking over DDS (``--composed`` puts them in one process).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="hsnn-demo", description=__doc__)
    ap.add_argument("--samples", type=int, default=30, help="synthetic gestures to play")
    ap.add_argument("--model", default="", help="model bundle directory (default: shipped model)")
    ap.add_argument("--snn-backend", default="native", choices=("native", "lava", "lava-hw"))
    ap.add_argument(
        "--classifier-backend", default="onnxruntime", choices=("onnxruntime", "tensorrt")
    )
    ap.add_argument("--interval", type=int, default=0, help="accumulation interval I (0 = model's)")
    ap.add_argument("--speed", type=float, default=1.0, help="1 = real time")
    ap.add_argument("--seed", type=int, default=7, help="seed of the synthetic stream")
    ap.add_argument("--composed", action="store_true", help="all nodes in one process")
    ap.add_argument("--timeout", type=float, default=0.0, help="seconds (0 = from the samples)")
    ap.add_argument("--namespace", default="hsnn_demo")
    return ap.parse_args(argv)


def isolate_dds() -> None:
    """Keep the demo's DDS traffic on this host and off other runs' domains."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    isolate_dds()
    from hsnn_perception.core.bundle import BundleError, ModelBundle, default_bundle_path
    from hsnn_perception.core.results import format_summary, summarize
    from hsnn_perception.graph import pipeline
    from hsnn_perception.tools.session import STAGES, PipelineError, run_session

    try:
        bundle = ModelBundle.load(opts.model or default_bundle_path())
        specs = pipeline(
            model=str(bundle.path),
            snn_backend=opts.snn_backend,
            classifier_backend=opts.classifier_backend,
            interval=opts.interval,
            num_samples=opts.samples,
            speed=opts.speed,
            seed=opts.seed,
        )
    except (BundleError, ValueError) as exc:
        print(f"hsnn-demo: {exc}", file=sys.stderr)
        return 2
    print(
        f"model {bundle.name}: {bundle.metrics.get('test_accuracy', 'n/a')} test accuracy "
        f"recorded in its manifest; playing {opts.samples} synthetic gestures "
        f"({'one process' if opts.composed else 'one process per stage'}, DDS domain "
        f"{os.environ['ROS_DOMAIN_ID']})",
        flush=True,
    )

    def show(rec) -> None:  # noqa: ANN001
        mark = {True: "ok", False: "WRONG", None: "?"}[rec.correct]
        print(
            f"window {rec.window_id:4d}  true: {rec.true_label or '?':<18} predicted: "
            f"{rec.predicted_label:<18} ({rec.score:.2f})  {mark}",
            flush=True,
        )

    window_s = bundle.window_us * 1e-6
    timeout = opts.timeout or 30.0 + opts.samples * window_s / max(opts.speed, 0.25) * 3
    log_dir = Path("log") / time.strftime("demo-%Y%m%d-%H%M%S")
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        result = run_session(
            specs,
            opts.samples,
            namespace=opts.namespace,
            composed=opts.composed,
            timeout_s=timeout,
            on_classification=show,
            log_dir=log_dir,
        )
    except PipelineError as exc:
        print(f"hsnn-demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    records = result.records
    print()
    print(format_summary(summarize(records, STAGES)))
    print(f"\nwall time {time.monotonic() - started:.1f} s; node logs in {log_dir}")
    if not records:
        print("hsnn-demo: no prediction arrived", file=sys.stderr)
        return 1
    if len(records) < opts.samples:
        print(
            f"hsnn-demo: only {len(records)} of {opts.samples} windows were classified before "
            "the time-out",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
