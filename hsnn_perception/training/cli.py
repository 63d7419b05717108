"""Command lines: ``hsnn-train`` (train one model, write a bundle), ``hsnn-compare`` (train
the family and write the paper's comparison) and ``hsnn-convert`` (turn the first layers of a
trained ANN bundle into spiking layers); also
``python -m hsnn_perception.training.cli train|compare|convert ...``.

Errors in the inputs end with a one-line message and exit status 2 (usage) or 1 (failure), never
a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hsnn_perception.core import registry
from hsnn_perception.tools.errors import (
    CliError,
    number_arg,
    one_line,
    prepare_out,
    remove_if_empty,
    show_defaults,
)
from hsnn_perception.training.data import InputSpec, SpikeSet
from hsnn_perception.training.models import ArchSpec
from hsnn_perception.training.regularization import RateTarget, RegularizationError

SYNTHETIC_TEST_OFFSET = 1_000_000  # test samples are indices from here on: never seen in training
DEFAULT_CACHE = Path.home() / ".cache" / "hsnn" / "datasets"
# What core/snn load_snn accepts (the bundle check after training runs through it).
SNN_BACKENDS = registry.SNN_BACKENDS.names(aliases=True)


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from exc


def _rate_target(text: str) -> RateTarget:
    try:
        return RateTarget.parse(text)
    except RegularizationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        choices=("synthetic", "dvsgesture", "aedat4"),
        default="synthetic",
        help="synthetic (built in), dvsgesture (IBM AEDAT 3.1 folder), aedat4 (+ label CSVs)",
    )
    g.add_argument("--data", type=Path, help="dataset folder (dvsgesture, aedat4)")
    g.add_argument(
        "--n-train", type=number_arg(int, 1), default=2200, help="synthetic training samples"
    )
    g.add_argument("--n-test", type=number_arg(int, 1), default=550, help="synthetic test samples")
    g.add_argument("--data-seed", type=int, default=0, help="synthetic generator seed")
    g.add_argument("--height", type=int, default=32, help="input height after downsampling")
    g.add_argument("--width", type=int, default=32, help="input width after downsampling")
    g.add_argument("--sensor-height", type=int, default=128)
    g.add_argument("--sensor-width", type=int, default=128)
    g.add_argument("--bin-us", type=int, default=10_000, help="bin width (paper: 10 ms)")
    g.add_argument("--timesteps", type=int, default=16, help="bins per window (paper: 16)")
    g.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="binned-data cache")
    g.add_argument("--no-cache", action="store_true", help="do not cache binned data")


def add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=number_arg(int, 0), default=12)
    g.add_argument("--batch-size", type=number_arg(int, 1), default=32)
    g.add_argument("--lr", type=number_arg(float, 0, above=True), default=3e-3)
    g.add_argument("--weight-decay", type=number_arg(float, 0), default=1e-4)
    g.add_argument("--seed", type=int, default=0, help="training seed")
    g.add_argument("--threads", type=number_arg(int, 1), default=1, help="torch CPU threads")
    g.add_argument("--channels", type=_int_list, default=[16, 32, 32, 32], help="L1-L4 widths")
    g.add_argument("--hidden", type=number_arg(int, 1), default=64, help="L5 width")
    g.add_argument(
        "--rate-target",
        type=_rate_target,
        action="append",
        default=[],
        help="firing-rate target percentile:low:high (once for all layers, or once per layer)",
    )
    g.add_argument(
        "--rate-weight", type=number_arg(float, 0), default=0.0, help="firing-rate penalty weight"
    )
    g.add_argument(
        "--qat-epochs", type=number_arg(int, 0), default=0, help="8-bit QAT epochs for the ANN part"
    )
    g.add_argument(
        "--final-eval-only",
        action="store_true",
        help="test accuracy after the last epoch only (no per-epoch history, no rate summaries)",
    )
    g.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def input_spec_from(args: argparse.Namespace) -> InputSpec:
    return InputSpec(
        sensor_height=args.sensor_height,
        sensor_width=args.sensor_width,
        height=args.height,
        width=args.width,
        bin_us=args.bin_us,
        timesteps=args.timesteps,
    )


def load_data(args: argparse.Namespace, spec: InputSpec) -> tuple[SpikeSet, SpikeSet, dict]:
    """Training and test sets for the chosen dataset, and a description for the recipe."""
    cache = None if args.no_cache else args.cache_dir
    progress = not args.no_progress
    if args.dataset == "synthetic":
        from hsnn_perception.training.data import synthetic_spikeset

        train = synthetic_spikeset(args.n_train, spec, args.data_seed, 0, cache, progress)
        test = synthetic_spikeset(
            args.n_test, spec, args.data_seed, SYNTHETIC_TEST_OFFSET, cache, progress
        )
        desc = {
            "dataset": "synthetic",
            "seed": args.data_seed,
            "train_indices": [0, args.n_train],
            "test_indices": [SYNTHETIC_TEST_OFFSET, SYNTHETIC_TEST_OFFSET + args.n_test],
        }
        return train, test, desc
    if args.data is None:
        raise CliError(f"--dataset {args.dataset} needs --data PATH")
    if args.data.exists() and not args.data.is_dir():
        raise CliError(f"--data {args.data} is a file: give the dataset folder")
    if args.dataset == "dvsgesture":
        from hsnn_perception.training.dvsgesture import load_dvsgesture

        train, test = load_dvsgesture(args.data, spec, progress=progress)
    else:
        from hsnn_perception.training.aedat_labels import load_aedat4_folder

        train, test = load_aedat4_folder(args.data, spec, progress=progress)
    return train, test, {"dataset": args.dataset, "path": str(args.data)}


def arch_from(args: argparse.Namespace, k: int, interval: int, classes: int) -> ArchSpec:
    if len(args.channels) != 4:
        raise CliError(f"--channels needs 4 widths (L1-L4), got {args.channels}")
    return ArchSpec(
        k=k,
        interval=interval,
        timesteps=args.timesteps,
        height=args.height,
        width=args.width,
        channels=tuple(args.channels),
        hidden=args.hidden,
        num_classes=classes,
    )


def train_config_from(args: argparse.Namespace):  # -> TrainConfig (lazy import of torch code)
    from hsnn_perception.training.train import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        threads=args.threads,
        rate_targets=list(args.rate_target),
        rate_weight=args.rate_weight,
        qat_epochs=args.qat_epochs,
        max_steps=args.max_steps,
        eval_each_epoch=not args.final_eval_only,
    )


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hsnn-train",
        description="Train a hybrid SNN-ANN model (SkA(6-k)) and write a deployable bundle.",
    )
    p.add_argument("--k", type=int, default=2, help="spiking layers: 0 (ANN) .. 6 (SNN)")
    p.add_argument("--interval", type=int, default=4, help="accumulator interval I (timesteps)")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    p.add_argument("--name", default=None, help="bundle name (default: <dataset>-<model>)")
    p.add_argument(
        "--snn-backend",
        default="native",
        choices=SNN_BACKENDS,
        help="SNN backend for the bundle check",
    )
    add_data_args(p)
    add_train_args(p)
    return p


def _fail(prog: str, msg: str, code: int = 1) -> int:
    print(f"{prog}: error: {one_line(msg)}", file=sys.stderr)
    return code


def check_common(args: argparse.Namespace, ks: Sequence[int]) -> None:
    """Checks that need no data, done before minutes of rendering and training."""
    if args.rate_target and not args.rate_weight > 0:
        raise CliError("--rate-target has no effect without --rate-weight W (W > 0)")
    n = len(args.rate_target)
    for k in ks:
        if n > 1 and k > 0 and n != k:
            raise CliError(
                f"give one --rate-target, or one per spiking layer ({k} for --k {k}), got {n}"
            )


def run_training(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Train one model as ``args`` say, write its bundle, return the manifest metrics."""
    import numpy as np

    from hsnn_perception.training.export import predict_bundle, write_bundle
    from hsnn_perception.training.quantize import export_qat_int8
    from hsnn_perception.training.train import train_model

    spec_in = input_spec_from(args)
    t0 = time.perf_counter()
    train, test, data_desc = load_data(args, spec_in)
    arch = arch_from(args, args.k, args.interval, len(train.class_names))
    config = train_config_from(args)
    result = train_model(arch, train, test, config, progress=not args.no_progress, log=log)
    name = args.name or f"{data_desc['dataset']}-{arch.name}-I{arch.interval}"
    recipe = {
        "command": "hsnn-train " + " ".join(getattr(args, "argv", [])),
        "model": arch.name,
        "arch": arch.to_dict(),
        "train": config.to_dict(),
        "data": {**data_desc, "input": spec_in.to_dict(), "n_train": len(train)},
        "history": result.history,
    }
    bundle = write_bundle(result.model, args.out, spec_in, train.class_names, name, recipe)
    run = predict_bundle(bundle, test.spikes, snn_backend=args.snn_backend)
    acc = float(np.mean(run.predictions == test.labels))
    from hsnn_perception.training.train import predict_torch

    torch_pred = predict_torch(result.model, test)
    metrics: dict[str, Any] = {
        "test_accuracy": acc,
        "measured_with": f"snn_runtime backend={args.snn_backend} + onnxruntime CPU",
        "test_samples": len(test),
        "test_accuracy_torch": result.test_accuracy,
        "torch_agreement": float(np.mean(torch_pred == run.predictions)),
        "train_seconds": round(result.train_seconds, 1),
        "total_seconds": None,
    }
    if result.rates_before is not None:
        metrics["firing_rates_before"] = result.rates_before
        metrics["firing_rates_after"] = result.rates_after
    if config.qat_epochs > 0 and arch.k < 6:
        qat = export_qat_int8(result, train, test, Path(args.out), log=log)
        int8_run = predict_bundle(bundle, test.spikes, args.snn_backend, ann_file=qat.path)
        metrics["int8"] = {
            "file": qat.path.name,
            "test_accuracy": float(np.mean(int8_run.predictions == test.labels)),
            "test_accuracy_float": acc,
            "qat_epochs": config.qat_epochs,
            "measured_with": "snn_runtime + onnxruntime CPU (QDQ int8)",
        }
    metrics["total_seconds"] = round(time.perf_counter() - t0, 1)
    doc = json.loads((bundle.path / "manifest.json").read_text())
    doc["metrics"] = metrics
    (bundle.path / "manifest.json").write_text(json.dumps(doc, indent=2) + "\n")
    log(f"wrote {bundle.path}: test accuracy {acc:.4f} ({len(test)} windows, bundle path)")
    return metrics


def _run_tool(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    run: Any,
    check: Any = None,
    out_attr: str | None = "out",
) -> int:
    """Parse ``argv``, ``check`` the arguments, make the output folder, ``run``: a bad input
    ends with one line and exit 1 (2 for usage), never a traceback; an output folder this run
    created is removed again if it failed before writing anything."""
    argv = list(sys.argv[1:] if argv is None else argv)
    show_defaults(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage message
        return int(exc.code or 0)
    args.argv = argv
    created = False
    try:
        if check is not None:
            check(args)
        if out_attr is not None:
            created = prepare_out(getattr(args, out_attr))
        run(args)
    except (ValueError, OSError, ImportError) as exc:
        if created:
            remove_if_empty(getattr(args, out_attr))
        return _fail(parser.prog, one_line(exc))
    except KeyboardInterrupt:
        return _fail(parser.prog, "interrupted", 130)
    return 0


def train_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hsnn-train``."""
    return _run_tool(train_parser(), argv, run_training, lambda args: check_common(args, [args.k]))


def _check_compare(args: argparse.Namespace) -> None:
    from hsnn_perception.core.energy.profiles import ANN_DEVICE_PROFILES

    if args.ann_device not in ANN_DEVICE_PROFILES:
        known = ", ".join(sorted(ANN_DEVICE_PROFILES))
        raise CliError(f"--ann-device {args.ann_device!r}: choose from {known}")
    if args.latency_runs < 1:
        raise CliError(f"--latency-runs must be >= 1, got {args.latency_runs}")
    check_common(args, [])


def compare_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hsnn-compare``."""
    from hsnn_perception.training.compare import compare_parser, run_compare

    return _run_tool(compare_parser(), argv, run_compare, _check_compare)


def convert_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hsnn-convert",
        description="Convert the first K layers of a trained ANN bundle into Loihi spiking layers "
        "(rate coding, percentile threshold balancing) and write a hybrid bundle.",
    )
    p.add_argument("source", type=Path, help="ANN bundle (trained with --k 0 --interval T)")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    p.add_argument("--k", type=int, default=1, help="layers to convert into spiking layers")
    p.add_argument(
        "--percentile", type=float, default=99.0, help="activation percentile for thresholds"
    )
    p.add_argument("--name", default=None, help="bundle name (default: <source>-converted-SkA..)")
    add_data_args(p)
    p.set_defaults(n_train=220, n_test=550)  # calibration windows, evaluation windows
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run_conversion(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Convert as ``args`` say; measure source and converted accuracy on the test windows."""
    import numpy as np

    from hsnn_perception.core.hybrid.bundle import ModelBundle
    from hsnn_perception.training.convert import convert_bundle
    from hsnn_perception.training.export import predict_bundle

    source = ModelBundle.load(args.source)
    # The data must be binned the way the bundle was trained.
    for key, value in (
        ("sensor_height", source.sensor_height),
        ("sensor_width", source.sensor_width),
        ("height", source.height),
        ("width", source.width),
        ("bin_us", source.bin_us),
        ("timesteps", source.timesteps),
    ):
        setattr(args, key, value)
    calibration, test, data_desc = load_data(args, input_spec_from(args))
    bundle, report = convert_bundle(
        source.path, args.out, args.k, calibration.spikes, args.percentile, args.name, log=log
    )
    ann_acc = float(np.mean(predict_bundle(source, test.spikes).predictions == test.labels))
    run = predict_bundle(bundle, test.spikes)
    acc = float(np.mean(run.predictions == test.labels))
    metrics = {
        "test_accuracy": acc,
        "source_test_accuracy": ann_acc,
        "measured_with": "snn_runtime backend=native + onnxruntime CPU",
        "test_samples": len(test),
        "calibration": {**data_desc, "windows": len(calibration)},
    }
    doc = json.loads((bundle.path / "manifest.json").read_text())
    doc["metrics"] = metrics
    doc["recipe"]["command"] = "hsnn-convert " + " ".join(getattr(args, "argv", []))
    (bundle.path / "manifest.json").write_text(json.dumps(doc, indent=2) + "\n")
    log(
        f"wrote {bundle.path}: test accuracy {acc:.4f} (source ANN {ann_acc:.4f}) on "
        f"{len(test)} windows"
    )
    return metrics


def convert_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hsnn-convert``."""
    return _run_tool(convert_parser(), argv, run_conversion)


COMMANDS = {"train": train_main, "compare": compare_main, "convert": convert_main}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        usage = "{" + ",".join(COMMANDS) + "}"
        print(f"usage: python -m hsnn_perception.training.cli {usage} ...", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
