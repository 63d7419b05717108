"""Compare the classifier backends on a model bundle's ANN, side by side in one run.

    python bench/classifier_backends.py [--bundle models/default] [--test 220] [--calib 300]

Rows: ONNX Runtime CPU (FP32, the reference; INT8 QDQ), ONNX Runtime CUDA EP and TensorRT EP
(FP32), and TensorRT engines (FP32, FP16, INT8). For each row that can run here it prints the
build/load time, the top-1 agreement with ONNX Runtime CPU FP32 on the synthetic test set, the
accuracy against the labels, and per-inference latency (median, p90; batch 1, host to host) with
its ratio to the CPU reference measured in the same run. Rows that cannot run (no GPU, no
tensorrt, provider missing) are printed as skipped with the reason.

Checks (exit status 1 if one fails): FP32/FP16 top-1 agreement >= 99 %, INT8 accuracy within 1
point of the FP32 reference. Test samples come from seed 0, calibration samples from seed 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hsnn_perception.core.ann.backends import (  # noqa: E402
    BackendError,
    BackendUnavailableError,
    ClassifierBackend,
    create_backend,
)
from hsnn_perception.core.ann.calibration import bundle_ann_inputs  # noqa: E402
from hsnn_perception.core.ann.onnxruntime import CUDA_PROVIDER, TENSORRT_PROVIDER  # noqa: E402
from hsnn_perception.core.hybrid.bundle import BundleError, ModelBundle, default_bundle_path  # noqa: E402

AGREEMENT_MIN = 0.99  # FP32 / FP16 top-1 agreement with ONNX Runtime CPU FP32
INT8_ACCURACY_DROP_MAX = 0.01  # one accuracy point


@dataclass
class Row:
    label: str
    kind: str
    precision: str
    options: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    device: str = ""
    skipped: str = ""
    build_s: float = float("nan")
    agreement: float = float("nan")
    accuracy: float = float("nan")
    median_ms: float = float("nan")
    p90_ms: float = float("nan")
    check: str = ""


def time_inference(backend: ClassifierBackend, x: np.ndarray, repeat: int, warmup: int) -> list:
    """Per-call latency in ms of ``backend.infer`` on single samples (cycled through ``x``)."""
    for i in range(warmup):
        backend.infer(x[i % len(x)])
    times = []
    for i in range(repeat):
        sample = x[i % len(x)]
        start = time.perf_counter_ns()
        backend.infer(sample)
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def run_row(
    row: Row,
    model: Path,
    test_x: np.ndarray,
    labels: np.ndarray,
    calib: np.ndarray,
    ref_pred: np.ndarray | None,
    args: argparse.Namespace,
    log: Any,
) -> np.ndarray | None:
    try:
        backend = create_backend(
            row.kind,
            model,
            precision=row.precision,
            cache_dir=args.cache_dir,
            calibration_data=calib if row.precision == "int8" else None,
            force_rebuild=args.force_rebuild,
            logger=log,
            **row.options,
        )
    except BackendUnavailableError as exc:
        row.skipped = str(exc)
        return None
    except BackendError as exc:
        row.skipped = f"failed to build: {exc}"
        return None
    with backend:
        row.name, row.device, row.build_s = backend.name, backend.device, backend.build_seconds
        wanted = row.options.get("providers")
        if row.kind == "onnxruntime" and wanted not in (None, "cpu"):
            provider = {"cuda": CUDA_PROVIDER, "tensorrt": TENSORRT_PROVIDER}[wanted]
            if backend.provider != provider:
                row.skipped = f"{provider} is not available here (ran on {backend.provider})"
                return None
        if row.kind == "onnxruntime" and row.precision != backend.precision:
            row.skipped = f"{row.precision} does not apply on {backend.name}"
            return None
        logits = np.concatenate([backend.infer(sample) for sample in test_x])
        pred = logits.argmax(axis=1)
        row.accuracy = float((pred == labels).mean())
        if ref_pred is not None:
            row.agreement = float((pred == ref_pred).mean())
        times = time_inference(backend, test_x, args.repeat, args.warmup)
        row.median_ms = float(np.median(times))
        row.p90_ms = float(np.percentile(times, 90))
    return pred


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (models/default)")
    parser.add_argument("--test", type=int, default=220, help="synthetic test samples (seed 0)")
    parser.add_argument("--calib", type=int, default=300, help="calibration samples (seed 1)")
    parser.add_argument("--repeat", type=int, default=300, help="timed inferences per row")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--cache-dir", type=Path, default=None, help="engine cache (a temp dir)")
    parser.add_argument("--force-rebuild", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=None, help="ONNX Runtime intra-op threads (the backend: 1)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--verbose", action="store_true", help="print the backends' log lines")
    args = parser.parse_args(argv)

    bundle_path = args.bundle or default_bundle_path()
    try:
        bundle = ModelBundle.load(bundle_path)
    except BundleError as exc:
        print(f"error: {exc}\n(pass --bundle PATH to a model bundle)", file=sys.stderr)
        return 2
    if bundle.ann_file is None:
        print(f"error: bundle {bundle.name} has no ANN part to run", file=sys.stderr)
        return 2
    tmp = None
    if args.cache_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="hsnn-bench-cache-")
        args.cache_dir = Path(tmp.name)

    def log(msg: str) -> None:
        if args.verbose:
            print(f"  | {msg}")

    print(f"bundle {bundle.name} ({bundle_path}), ANN {bundle.ann_file.name}, input "
          f"{bundle.ann_input_shape}")  # fmt: skip
    start = time.perf_counter()
    test_x, labels = bundle_ann_inputs(bundle, range(args.test), seed=0)
    calib, _ = bundle_ann_inputs(bundle, range(args.calib), seed=1)
    print(f"made {len(test_x)} test and {len(calib)} calibration inputs through the pipeline "
          f"in {time.perf_counter() - start:.1f} s")  # fmt: skip

    cpu_opts: dict[str, Any] = {"providers": "cpu"}
    if args.threads is not None:
        cpu_opts["threads"] = args.threads
    rows = [
        Row("ORT CPU", "onnxruntime", "fp32", dict(cpu_opts)),
        Row("ORT CPU", "onnxruntime", "int8", dict(cpu_opts)),
        Row("ORT CUDA EP", "onnxruntime", "fp32", {"providers": "cuda"}),
        Row("ORT TensorRT EP", "onnxruntime", "fp16", {"providers": "tensorrt"}),
        Row("TensorRT", "tensorrt", "fp32"),
        Row("TensorRT", "tensorrt", "fp16"),
        Row("TensorRT", "tensorrt", "int8"),
    ]
    ref_pred = None
    model = bundle.ann_file
    for row in rows:
        print(f"running {row.label} {row.precision} ...", flush=True)
        pred = run_row(row, model, test_x, labels, calib, ref_pred, args, log)
        if row is rows[0]:
            if pred is None:
                print(f"error: the ONNX Runtime CPU reference failed: {row.skipped}")
                return 2
            ref_pred = pred
            row.agreement = 1.0

    ref = rows[0]
    failed = False
    for row in rows:
        if row.skipped or row is ref:
            continue
        if row.precision in ("fp32", "fp16"):
            ok = row.agreement >= AGREEMENT_MIN
            row.check = f"{'PASS' if ok else 'FAIL'} agreement >= {AGREEMENT_MIN:.0%}"
        else:
            ok = row.accuracy >= ref.accuracy - INT8_ACCURACY_DROP_MAX
            row.check = f"{'PASS' if ok else 'FAIL'} accuracy within 1 point"
        failed |= not ok

    print()
    header = (
        f"{'backend':<16} {'prec':<5} {'build/load s':>12} {'agree':>7} {'acc':>7} "
        f"{'median ms':>10} {'p90 ms':>8} {'vs CPU':>7}  check / device"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if row.skipped:
            print(f"{row.label:<16} {row.precision:<5} SKIPPED: {row.skipped}")
            continue
        ratio = ref.median_ms / row.median_ms
        print(
            f"{row.label:<16} {row.precision:<5} {row.build_s:>12.2f} {row.agreement:>7.1%} "
            f"{row.accuracy:>7.1%} {row.median_ms:>10.3f} {row.p90_ms:>8.3f} {ratio:>6.2f}x  "
            f"{row.check or 'reference'} / {row.name} on {row.device}"
        )
    print(
        f"\n{len(test_x)} test samples; latency over {args.repeat} single-sample calls after "
        f"{args.warmup} warm-up calls; 'vs CPU' = ORT CPU FP32 median / row median (> 1: faster)."
    )
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    if failed:
        print("some checks FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
