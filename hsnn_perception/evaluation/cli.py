"""``hsnn-eval``: evaluate a model (or a family of models) on a labelled event bag.

    hsnn-eval BAG [--bundle models/default] [--out reports/NAME] [--chip loihi] ...
    hsnn-eval BAG --mode dds [--speed 1] [--composed] [--classifier-backend onnxruntime] ...

``--mode offline`` (default) runs the pipeline's core code in this process, without ROS.
``--mode dds`` plays the bag through the real nodes over DDS (hsnn_perception.tools.replay) and
collects their Classification and EnergyReport messages; the report has the same form.

``--bundle`` may be one bundle directory or a directory of bundles (a model family): then each is
evaluated and ``family.md`` / ``family.json`` compare them. Bad input (not a bag, a bag without
events, a broken bundle) ends with a one-line message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from hsnn_perception.core import registry
from hsnn_perception.core.energy.profiles import (
    ANN_DEVICE_PROFILES,
    DEFAULT_ANN_DEVICE,
    NEUROMORPHIC_PROFILES,
)
from hsnn_perception.core.events.filters import INPUT_MAPPINGS
from hsnn_perception.core.hybrid.bundle import MANIFEST, default_bundle_path, resolve_model
from hsnn_perception.tools.errors import (
    check_namespace,
    closed_pipe,
    one_line,
    prepare_out,
    remove_if_empty,
    show_defaults,
)

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hsnn-eval",
        description="Evaluate hybrid SNN/ANN models on a labelled event bag (offline or over "
        "DDS through the pipeline nodes).",
    )
    p.add_argument(
        "bag", type=Path, help="rosbag2 directory or .mcap/.db3 file with an events topic"
    )
    p.add_argument(
        "--events-topic",
        default=None,
        help="the bag's events topic (default: the one topic of type "
        "hsnn_perception/msg/EventPacket or event_camera_msgs/msg/EventPacket)",
    )
    p.add_argument(
        "--input-mapping",
        default="scale",
        choices=INPUT_MAPPINGS,
        help="sensor -> model input: the SNN node's input_mapping (set on it over DDS)",
    )
    p.add_argument(
        "--input-roi",
        type=int,
        nargs=4,
        default=None,
        metavar=("X", "Y", "W", "H"),
        help="region of the sensor mapped onto the model input (the SNN node's input_roi; "
        "default: all)",
    )
    p.add_argument(
        "--bundle",
        default=None,
        help="model bundle directory, a directory of bundles, or a shipped model's name such as "
        "synthetic-128 (default: models/default)",
    )
    p.add_argument("--out", type=Path, default=None, help="report directory (default reports/BAG)")
    p.add_argument(
        "--backend",
        default="native",
        help="SNN backend: " + ", ".join(registry.SNN_BACKENDS.names(aliases=True)),
    )
    p.add_argument("--chip", default="loihi", choices=sorted(NEUROMORPHIC_PROFILES))
    p.add_argument(
        "--loihi-cores", type=int, default=0, help="cores the SNN occupies (adds static power)"
    )
    p.add_argument(
        "--ann-device",
        default=DEFAULT_ANN_DEVICE,
        choices=["none", *sorted(ANN_DEVICE_PROFILES)],
        help="energy model of the ANN part where no power meter is readable (as the classifier "
        f"node's energy_model_device; default {DEFAULT_ANN_DEVICE}; none: unavailable)",
    )
    p.add_argument("--providers", default="cpu", help="ONNX Runtime providers (cpu, auto, ...)")
    p.add_argument("--max-windows", type=int, default=0, help="stop after N windows (0: all)")
    p.add_argument("--no-meter", action="store_true", help="do not read power meters")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--require-labels", action="store_true", help="fail if the bag has no ground truth"
    )
    p.add_argument(
        "--mode",
        default="offline",
        choices=("offline", "dds"),
        help="offline: core code in this process; dds: the pipeline nodes over DDS",
    )
    dds = p.add_argument_group("DDS replay (--mode dds)")
    dds.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="1 = sensor pace, 0 = as fast as the pipeline keeps up (lossless: flow control)",
    )
    dds.add_argument(
        "--flow-windows",
        type=int,
        default=4,
        help="speed 0: windows in flight before the driver waits (0: no flow control, a "
        "best-effort flood that measures what the pipeline drops)",
    )
    dds.add_argument(
        "--host-time",
        action="store_true",
        help="nodes on the host clock (default: sim time, /clock from the driver in sensor time)",
    )
    dds.add_argument("--composed", action="store_true", help="all nodes in one process")
    dds.add_argument(
        "--classifier-backend", default="onnxruntime", choices=("onnxruntime", "tensorrt")
    )
    dds.add_argument("--namespace", default="", help="ROS namespace (default: a random one)")
    dds.add_argument("--timeout", type=float, default=0.0, help="seconds (0: from the bag)")
    return show_defaults(p)


def find_bundles(path: Path) -> list[Path]:
    """``path`` itself if it is a bundle, else its sub-directories that are bundles (sorted)."""
    if (path / MANIFEST).is_file() or path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if (p / MANIFEST).is_file())
    return []


def check_args(args: argparse.Namespace) -> None:
    """Argument values that cannot work, before anything runs (ValueError, one line)."""
    if args.max_windows < 0 or args.loihi_cores < 0:
        raise ValueError("--max-windows and --loihi-cores must be >= 0")
    if args.mode == "dds":
        if args.max_windows:
            raise ValueError("--max-windows applies to --mode offline only")
        if not (args.speed >= 0 and math.isfinite(args.speed)):
            raise ValueError(f"--speed must be a finite number >= 0, got {args.speed}")
        if args.flow_windows == 1 or args.flow_windows < 0:
            raise ValueError(f"--flow-windows must be 0 (off) or >= 2, got {args.flow_windows}")
        if not (args.timeout >= 0 and math.isfinite(args.timeout)):
            raise ValueError(
                f"--timeout must be a finite number of seconds >= 0, got {args.timeout}"
            )
        check_namespace(args.namespace)


def _bundle_error(exc: ValueError, bundle: Path, bag: Path) -> ValueError:
    """``exc`` naming the model when its message names neither the bundle nor the bag."""
    msg = one_line(exc)
    if str(bundle) in msg or str(bag) in msg:
        return exc
    return ValueError(f"model {bundle}: {msg}")


def eval_main(argv: list[str] | None = None) -> int:
    from hsnn_perception.evaluation.offline import OfflineSettings, evaluate_offline
    from hsnn_perception.evaluation.report import summarize, write_family_report, write_report

    args = build_parser().parse_args(argv)
    bundle_arg = resolve_model(str(args.bundle)) if args.bundle else default_bundle_path()
    out = args.out or Path("reports") / args.bag.name.split(".")[0]
    settings = OfflineSettings(
        backend=args.backend,
        chip=args.chip,
        loihi_cores=args.loihi_cores,
        ann_device="" if args.ann_device == "none" else args.ann_device,
        providers=args.providers,
        measure=not args.no_meter,
        max_windows=args.max_windows,
        progress=not args.no_progress,
        events_topic=args.events_topic,
        input_mapping=args.input_mapping,
        input_roi=tuple(args.input_roi or ()),
    )
    created_out = False
    try:
        check_args(args)
        bundles = find_bundles(Path(bundle_arg))
        if not bundles:
            raise ValueError(f"no model bundle at {bundle_arg} (no {MANIFEST} there or below)")
        family = len(bundles) > 1 or bundles[0] != Path(bundle_arg)
        created_out = prepare_out(out, "report")
        summaries = []
        no_output: list[str] = []
        for bundle in bundles:
            try:
                if args.mode == "dds":
                    result = _replay(args, bundle)
                else:
                    result = evaluate_offline(args.bag, bundle, settings)
            except ValueError as exc:
                raise _bundle_error(exc, bundle, args.bag) from exc
            if args.require_labels and not any(r.label is not None for r in result.records):
                raise ValueError(f"{args.bag} has no labelled windows (--require-labels)")
            target = out / bundle.name if family else out
            paths = write_report(result, target, plots=not args.no_plots)
            summary = summarize(result)
            summaries.append(summary)
            acc = summary["accuracy"]
            print(
                f"{summary['model']}: {summary['windows']} windows, accuracy "
                f"{'n/a' if acc is None else f'{acc * 100:.2f}%'} -> {paths['markdown']}"
            )
            if args.mode == "dds":
                for why, n in result.dropped.items():
                    print(f"  dropped: {n} {why}")
                if not result.records:
                    no_output.append(bundle.name)
        if family:
            fam = write_family_report(summaries, out)
            print(f"family comparison -> {fam['markdown']}")
        sys.stdout.flush()  # a closed pipe raises here, not in the interpreter's exit
    except BrokenPipeError:  # `hsnn-eval ... | head -1`: the reader has what it wanted
        return closed_pipe()
    except (ValueError, OSError) as exc:  # all the project's input errors subclass ValueError
        if created_out:
            remove_if_empty(out)
        print(f"hsnn-eval: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RuntimeError as exc:  # session.PipelineError: the nodes did not come up or died
        # The node logs follow on the next lines: the first line says what happened.
        print(f"hsnn-eval: error: the pipeline failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hsnn-eval: interrupted", file=sys.stderr)
        return 130
    if no_output:
        print(f"hsnn-eval: no window was classified over DDS for {no_output}", file=sys.stderr)
        return 1
    return 0


def _replay(args: argparse.Namespace, bundle: Path):  # noqa: ANN202 - ReplayResult, lazily
    """One DDS replay of ``args.bag`` with ``bundle`` (the nodes' own processes)."""
    import os
    import random

    from hsnn_perception.tools.replay import ReplaySettings, replay_dds

    if args.max_windows:
        raise ValueError("--max-windows applies to --mode offline only")
    offered = registry.SNN_BACKENDS.names(pipeline=True)
    if args.backend not in offered:
        raise ValueError(f"--backend {args.backend!r}: the SNN node offers {', '.join(offered)}")
    # Like the demo: keep the replay's DDS traffic on this host and off other runs' domains.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    settings = ReplaySettings(
        namespace=args.namespace,
        timeout_s=args.timeout,
        chip=args.chip,
        loihi_cores=args.loihi_cores,
        ann_device=args.ann_device,
        providers=args.providers if args.classifier_backend == "onnxruntime" else "",
        flow_max_windows=args.flow_windows,
        use_sim_time=not args.host_time,
        input_mapping=args.input_mapping,
        input_roi=tuple(args.input_roi or ()),
    )
    from tqdm import tqdm

    # No total: the windows are known only once the bag is read, inside the replay.
    bar = tqdm(desc=f"DDS replay ({bundle.name})", unit="window", disable=args.no_progress)
    try:
        return replay_dds(
            args.bag,
            bundle,
            events_topic=args.events_topic,
            snn_backend=args.backend,
            classifier_backend=args.classifier_backend,
            speed=args.speed,
            composed=args.composed,
            settings=settings,
            on_window=lambda _window: bar.update(1),
        )
    finally:
        bar.close()


if __name__ == "__main__":
    raise SystemExit(eval_main())
