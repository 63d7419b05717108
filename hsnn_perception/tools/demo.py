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
from typing import TYPE_CHECKING

from hsnn_perception.graph import CLASSIFIER_BACKENDS, SNN_BACKENDS
from hsnn_perception.tools.errors import check_namespace, number_arg, one_line

if TYPE_CHECKING:
    from hsnn_perception.core.hybrid.bundle import ModelBundle


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="hsnn-demo", description=__doc__)
    ap.add_argument(
        "--samples", type=number_arg(int, 1), default=30, help="synthetic gestures to play"
    )
    ap.add_argument("--model", default="", help="model bundle directory (default: shipped model)")
    ap.add_argument("--snn-backend", default="native", choices=SNN_BACKENDS)
    ap.add_argument("--classifier-backend", default="onnxruntime", choices=CLASSIFIER_BACKENDS)
    ap.add_argument(
        "--interval",
        type=number_arg(int, 0),
        default=0,
        help="accumulation interval I (0 = model's)",
    )
    ap.add_argument("--speed", type=number_arg(float, 0), default=1.0, help="1 = real time")
    ap.add_argument(
        "--seed", type=number_arg(int, 0), default=7, help="seed of the synthetic stream"
    )
    ap.add_argument("--composed", action="store_true", help="all nodes in one process")
    ap.add_argument(
        "--timeout", type=number_arg(float, 0), default=0.0, help="seconds (0 = from the samples)"
    )
    ap.add_argument("--namespace", default="hsnn_demo")
    return ap.parse_args(argv)


def isolate_dds() -> None:
    """Keep the demo's DDS traffic on this host and off other runs' domains."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))


def check_bundle(bundle: ModelBundle, interval: int) -> None:
    """Read the bundle's model files and check ``--interval`` here, so that a broken model or
    an interval the model cannot use fails at once with one line, not after the nodes waited a
    minute for a stage that refused to configure."""
    from hsnn_perception.core.ann.backends import check_bundle_ann

    timesteps = bundle.timesteps
    if interval and timesteps % interval:
        raise ValueError(
            f"--interval {interval} does not divide the model's {timesteps} timesteps per window"
        )
    if bundle.snn_file is not None:
        from hsnn_perception.core.snn.netx import read_netx

        read_netx(bundle.snn_file, (bundle.channels, bundle.height, bundle.width))
    if bundle.ann_file is not None:  # a valid ONNX model that takes what the accumulator gives
        check_bundle_ann(bundle)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    isolate_dds()
    from hsnn_perception.core.hybrid.bundle import BundleError, ModelBundle, default_bundle_path
    from hsnn_perception.evaluation.records import ReplayResult
    from hsnn_perception.evaluation.report import summarize, to_text
    from hsnn_perception.graph import pipeline
    from hsnn_perception.tools.session import PipelineError, run_session

    try:
        check_namespace(opts.namespace)
        bundle = ModelBundle.load(opts.model or default_bundle_path())
        check_bundle(bundle, opts.interval)
        specs = pipeline(
            model=str(bundle.path),
            snn_backend=opts.snn_backend,
            classifier_backend=opts.classifier_backend,
            interval=opts.interval,
            num_samples=opts.samples,
            speed=opts.speed,
            seed=opts.seed,
        )
    except (BundleError, ValueError, OSError) as exc:
        print(f"hsnn-demo: error: {one_line(exc)}", file=sys.stderr)
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
            f"window {rec.window_id:4d}  true: {rec.label_name or '?':<18} predicted: "
            f"{rec.prediction_name:<18} ({rec.score:.2f})  {mark}",
            flush=True,
        )

    window_s = bundle.window_us * 1e-6
    timeout = opts.timeout or 30.0 + opts.samples * window_s / max(opts.speed, 0.25) * 3
    log_dir = Path("log") / time.strftime("demo-%Y%m%d-%H%M%S")
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"hsnn-demo: error: no room for the node logs: {one_line(exc)}", file=sys.stderr)
        return 2
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
    run = ReplayResult(
        "synthetic gestures", str(bundle.path), "demo", list(bundle.labels), records=records
    )
    print(to_text(summarize(run)))
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
