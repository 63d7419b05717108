"""``hsnn-bag``: make, record and inspect rosbag2 files of the pipeline (MCAP or sqlite3).

    hsnn-bag convert synthetic OUT [--samples N] [--seed S] [--storage mcap|sqlite3]
                                   [--height H] [--width W] [--progress]
    hsnn-bag convert aedat4 FILE.aedat4 --labels labels.csv OUT [--storage ...] [--class-base 1]
    hsnn-bag convert aedat31 userNN_light.aedat OUT --dvsgesture   (IBM DvsGesture, AEDAT 3.1)
    hsnn-bag convert raw FILE.raw OUT [--max-us US]                (Prophesee EVT 3.0)
    hsnn-bag record OUT [--storage ...] [--namespace NS] [--topics events labels ...]
                        [--duration S | --windows N]
    hsnn-bag info BAG [--json] [--events-topic TOPIC]

``record`` subscribes to the pipeline's topics with rclpy generic (raw CDR) subscriptions and
writes the messages as they arrive, with the message definitions embedded, through
:class:`hsnn_perception.core.io.bag.write.BagRecorder`. It stops on Ctrl-C (SIGINT) or SIGTERM,
after ``--duration`` seconds or once ``--windows`` classifications were recorded, and always closes
the bag. Log time is the time a message arrived (as ``ros2 bag record`` does); event packets and
labels carry their sensor time inside, which is what replay uses.

Bad input ends with ``hsnn-bag: error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsnn_perception.core.io.bag.msgtypes import STORAGES
from hsnn_perception.core.registry import EVENT_CODECS
from hsnn_perception.tools.errors import (
    CliError,
    check_namespace,
    closed_pipe,
    number_arg,
    one_line,
    show_defaults,
)

EXIT_BAD_INPUT = 2
PROG = "hsnn-bag"

# Pipeline topics a recording can hold: relative name (graph.py) -> (rclpy message class path,
# bag message type, best effort?). The driver publishes events best-effort (sensor data); a
# reliable subscription would never match it. Everything else is published reliable.
RECORDABLE: dict[str, tuple[str, str, bool]] = {
    "events": ("hsnn_perception.msg:EventPacket", "hsnn_perception/msg/EventPacket", True),
    "labels": ("hsnn_perception.msg:GestureLabel", "hsnn_perception/msg/GestureLabel", False),
    "snn/spikes": ("hsnn_perception.msg:TensorList", "hsnn_perception/msg/TensorList", False),
    "tensors": ("hsnn_perception.msg:TensorList", "hsnn_perception/msg/TensorList", False),
    "classification": (
        "hsnn_perception.msg:Classification",
        "hsnn_perception/msg/Classification",
        False,
    ),
    "energy": ("hsnn_perception.msg:EnergyReport", "hsnn_perception/msg/EnergyReport", False),
    "energy/total": (
        "hsnn_perception.msg:EnergyReport",
        "hsnn_perception/msg/EnergyReport",
        False,
    ),
    "/diagnostics": (
        "diagnostic_msgs.msg:DiagnosticArray",
        "diagnostic_msgs/msg/DiagnosticArray",
        False,
    ),
}


# --------------------------------------------------------------------------------------------
# record
# --------------------------------------------------------------------------------------------


@dataclass
class RecordResult:
    """What a recording wrote: messages per bag topic, why it stopped, how long it ran."""

    path: Path
    counts: dict[str, int] = field(default_factory=dict)
    stopped_by: str = ""
    duration_s: float = 0.0


def bag_topic_name(topic: str, namespace: str, keep_namespace: bool) -> str:
    """Name of ``topic`` in the bag: ``/events`` (what replay and hsnn-eval read) unless the
    namespace is kept (``/ns/events``, as ``ros2 bag record`` would store it)."""
    from hsnn_perception.graph import qualified_name

    return qualified_name(namespace if keep_namespace else "", topic)


def _message_class(path: str) -> type:
    import importlib

    module, name = path.split(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise CliError(
            f"message type {path} is not importable ({exc}); source the environment "
            "(. .venv/hsnn-env.sh) so the built messages are on the path"
        ) from exc


def record(
    out: Path | str,
    *,
    storage: str = "mcap",
    namespace: str = "",
    topics: Sequence[str] | None = None,
    duration_s: float = 0.0,
    windows: int = 0,
    keep_namespace: bool = False,
    grace_s: float = 0.5,
    stop: threading.Event | None = None,
    on_ready: Callable[[], None] | None = None,
    handle_signals: bool = False,
) -> RecordResult:
    """Record pipeline topics from live DDS into a new bag at ``out`` until a stop condition.

    Stops when ``stop`` is set, after ``duration_s`` (> 0), or ``grace_s`` after the
    ``windows``-th (> 0) classification arrived (so the last window's energy reports are in). With
    none of them it runs until SIGINT/SIGTERM (``handle_signals``, main thread only). Runs in its
    own rclpy context, so it can share a process with other rclpy users. ``on_ready`` is called
    once the subscriptions exist.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.signals import SignalHandlerOptions

    from hsnn_perception.core.io.bag.write import BagRecorder
    from hsnn_perception.nodes.base import reliable_qos, sensor_qos

    chosen = list(topics) if topics else list(RECORDABLE)
    unknown = [t for t in chosen if t not in RECORDABLE]
    if unknown:
        raise CliError(f"cannot record {unknown}: known topics are {', '.join(RECORDABLE)}")
    if storage not in STORAGES:
        raise CliError(f"--storage must be one of {STORAGES}, got {storage!r}")
    if duration_s < 0 or windows < 0:
        raise CliError("--duration and --windows must be >= 0")
    if windows and "classification" not in chosen:
        raise CliError("--windows counts classifications: record the classification topic")
    check_namespace(namespace)  # before the bag exists: a bad name leaves nothing behind
    classes = {t: _message_class(RECORDABLE[t][0]) for t in chosen}
    out = Path(out)
    if out.exists():
        raise CliError(f"{out} exists: a recording goes into a new directory")
    stop = stop or threading.Event()
    reason: list[str] = []
    if handle_signals and threading.current_thread() is threading.main_thread():

        def _on_signal(signum: int, _frame: Any) -> None:
            reason.append(signal.Signals(signum).name)
            stop.set()

        previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    else:
        previous = {}
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    recorder = BagRecorder(
        out,
        storage,
        custom_data={
            "hsnn.source": "hsnn-bag record",
            "hsnn.namespace": namespace or "/",
            "hsnn.topics": ",".join(chosen),
        },
    )
    result = RecordResult(out)
    classified = [0]
    last_window_at: list[float] = []
    try:
        node = Node("hsnn_bag_recorder", namespace=namespace, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        clock = node.get_clock()

        def writer(topic: str, name: str, msgtype: str) -> Callable[[bytes], None]:
            def write(raw: bytes) -> None:
                recorder.write(name, msgtype, clock.now().nanoseconds, raw)
                if topic == "classification":
                    classified[0] += 1
                    if windows and classified[0] == windows:
                        last_window_at.append(time.monotonic())

            return write

        for topic in chosen:
            _, msgtype, best_effort = RECORDABLE[topic]
            qos = sensor_qos(1000) if best_effort else reliable_qos(1000)
            name = bag_topic_name(topic, namespace, keep_namespace)
            node.create_subscription(
                classes[topic], topic, writer(topic, name, msgtype), qos, raw=True
            )
        if on_ready is not None:
            on_ready()
        started = time.monotonic()
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
            now = time.monotonic()
            if duration_s and now - started >= duration_s:
                reason.append("duration")
                break
            if last_window_at and now - last_window_at[0] >= grace_s:
                reason.append(f"{windows} windows")
                break
        result.duration_s = time.monotonic() - started
        result.stopped_by = reason[0] if reason else "stop requested"
        executor.remove_node(node)
        node.destroy_node()
        executor.shutdown()
    finally:
        recorder.close()
        rclpy.try_shutdown(context=context)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    result.counts = dict(recorder.counts)
    return result


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG, description="Make, record and inspect rosbag2 files of the hsnn pipeline."
    )
    sub = ap.add_subparsers(dest="command", required=True)

    conv = sub.add_parser("convert", help="write a labelled event bag")
    kinds = conv.add_subparsers(dest="kind", required=True)
    syn = kinds.add_parser("synthetic", help="synthetic DVS gestures (one label per sample)")
    syn.add_argument("out", type=Path, help="new bag directory")
    syn.add_argument("--samples", type=number_arg(int, 1), default=100)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--height", type=number_arg(int, 1), default=128)
    syn.add_argument("--width", type=number_arg(int, 1), default=128)
    aed = kinds.add_parser("aedat4", help="an AEDAT4 recording plus a label CSV")
    aed.add_argument("file", type=Path, help="AEDAT4 file")
    aed.add_argument("out", type=Path, help="new bag directory")
    a31 = kinds.add_parser(
        "aedat31",
        help="an AEDAT 3.1 recording (jAER / cAER; IBM DvsGesture) plus a label CSV",
        description="An AEDAT 3.1 recording plus a label CSV. For IBM DvsGesture give "
        "--dvsgesture: the recording's own userNN_<light>_labels.csv, classes counted from 1, "
        "the data set's class names.",
    )
    a31.add_argument("file", type=Path, help="AEDAT 3.1 file (.aedat)")
    a31.add_argument("out", type=Path, help="new bag directory")
    a31.add_argument(
        "--dvsgesture",
        action="store_true",
        help="IBM DvsGesture: labels from FILE's _labels.csv, --class-base 1, its class names",
    )
    a31.add_argument("--height", type=number_arg(int, 1), default=128, help="sensor height")
    a31.add_argument("--width", type=number_arg(int, 1), default=128, help="sensor width")
    for p in (aed, a31):
        p.add_argument("--labels", type=Path, default=None, help="CSV of class,start_us,end_us")
        p.add_argument(
            "--class-base",
            type=number_arg(int, 0),
            default=0,
            help="first class number in the CSV (DvsGesture: 1)",
        )
        p.add_argument("--names", default="", help="comma-separated class names, by class id")
    raw = kinds.add_parser("raw", help="a Prophesee EVT 3.0 .raw recording (no labels)")
    raw.add_argument("file", type=Path, help=".raw file")
    raw.add_argument("out", type=Path, help="new bag directory")
    for p in (aed, a31, raw):
        p.add_argument(
            "--max-us",
            type=number_arg(int, 0),
            default=0,
            help="only the first MAX_US of sensor time (0: all)",
        )
    for p in (syn, aed, a31, raw):
        p.add_argument("--storage", choices=STORAGES, default="mcap")
        p.add_argument(
            "--packet-us", type=number_arg(int, 1), default=10_000, help="sensor time per packet"
        )
        p.add_argument(
            "--encoding",
            choices=EVENT_CODECS.names(),
            default="evt3" if p is raw else "mono",
            help="event encoding of the packets written",
        )
        p.add_argument(
            "--compression",
            choices=("none", "zstd"),
            default="none",
            help="MCAP chunk compression",
        )
        p.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="a progress bar on stderr (default: when stderr is a terminal)",
        )

    rec = sub.add_parser("record", help="record the pipeline's topics from live DDS")
    rec.add_argument("out", type=Path, help="new bag directory")
    rec.add_argument("--storage", choices=STORAGES, default="mcap")
    rec.add_argument("--namespace", default="", help="namespace of the pipeline")
    rec.add_argument(
        "--topics", nargs="+", default=None, metavar="TOPIC", help=f"of {', '.join(RECORDABLE)}"
    )
    stop = rec.add_mutually_exclusive_group()
    stop.add_argument(
        "--duration", type=number_arg(float, 0, finite=False), default=0.0, help="seconds"
    )
    stop.add_argument(
        "--windows", type=number_arg(int, 0), default=0, help="stop after N classifications"
    )
    rec.add_argument(
        "--keep-namespace",
        action="store_true",
        help="store /NS/events ... (default: /events ..., what replay and hsnn-eval read)",
    )

    info = sub.add_parser(
        "info", help="topics, counts, duration, labels, the events, what was skipped"
    )
    info.add_argument("bag", type=Path)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument(
        "--events-topic",
        default=None,
        help="the events topic to decode (default: every topic of type "
        "hsnn_perception/msg/EventPacket or event_camera_msgs/msg/EventPacket)",
    )
    return show_defaults(ap)


def _check_new(path: Path) -> None:
    if path.exists():
        raise CliError(f"{path} exists: give a new directory for the bag")


def _remove_bag(path: Path) -> None:
    """Remove a bag directory this command has just written (it did not exist before)."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _convert(args: argparse.Namespace) -> int:
    from hsnn_perception.core.io.bag.convert import (
        LABELS_OUTSIDE,
        aedat4_to_bag,
        aedat31_to_bag,
        evt3_raw_to_bag,
    )
    from hsnn_perception.core.io.bag.msgtypes import TOPIC_EVENTS
    from hsnn_perception.core.io.bag.write import synthetic_to_bag

    _check_new(args.out)
    if args.compression != "none" and args.storage != "mcap":
        raise CliError("--compression needs --storage mcap")
    names = None
    if args.kind == "aedat31" and args.dvsgesture:
        from hsnn_perception.training.dvsgesture import DVSGESTURE_LABELS

        if args.labels is None:
            args.labels = args.file.with_name(args.file.stem + "_labels.csv")
        args.class_base = 1
        args.names = args.names or ",".join(DVSGESTURE_LABELS)
    if args.kind in ("aedat4", "aedat31"):
        if args.labels is not None and not args.labels.is_file():
            raise CliError(f"no label file at {args.labels}")
        names = [n.strip() for n in args.names.split(",") if n.strip()] or None
        if names and args.labels is None:
            raise CliError("--names names the classes of --labels: give a label CSV too")
        if names and len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise CliError(f"--names: each class needs its own name, {twice} given twice")
    from hsnn_perception.tools.convert_progress import ConvertProgress

    what = f"writing {args.out.name}" if args.kind == "synthetic" else f"reading {args.file.name}"
    with ConvertProgress(what, args.progress) as progress:
        # what every converter takes, then what each kind adds
        common: dict[str, Any] = {
            "storage": args.storage,
            "packet_us": args.packet_us,
            "encoding": args.encoding,
            "compression": args.compression,
            "progress": progress,
        }
        if args.kind == "synthetic":
            size = {"height": args.height, "width": args.width}
            counts = synthetic_to_bag(args.out, args.samples, seed=args.seed, **size, **common)
        elif args.kind == "raw":
            counts = evt3_raw_to_bag(args.file, args.out, max_us=args.max_us, **common)
        else:
            labelled = {"class_base": args.class_base, "names": names, "max_us": args.max_us}
            if args.kind == "aedat31":
                size = {"height": args.height, "width": args.width}
                counts = aedat31_to_bag(
                    args.file, args.labels, args.out, **size, **labelled, **common
                )
            else:
                counts = aedat4_to_bag(args.file, args.labels, args.out, **labelled, **common)
    if args.kind != "synthetic" and not counts.get(TOPIC_EVENTS):
        _remove_bag(args.out)
        raise CliError(f"{args.file} holds no events: no bag written")
    outside = counts.pop(LABELS_OUTSIDE, 0)  # (label CSVs of AEDAT recordings only)
    if outside:
        print(
            f"hsnn-bag: warning: {outside} label spans of {args.labels} lie outside the "
            f"recording's time (another recording's labels, or times not in microseconds?)",
            file=sys.stderr,
        )
    print(
        f"{args.out}: "
        + ", ".join(f"{n} messages on {t}" for t, n in sorted(counts.items()))
        + f" ({args.storage})"
    )
    return 0


def _record(args: argparse.Namespace) -> int:
    _check_new(args.out)
    # Same DDS isolation as the demo: stay on this host unless the user says otherwise.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    def ready() -> None:
        print(f"recording into {args.out} (Ctrl-C to stop)", flush=True)

    result = record(
        args.out,
        storage=args.storage,
        namespace=args.namespace,
        topics=args.topics,
        duration_s=args.duration,
        windows=args.windows,
        keep_namespace=args.keep_namespace,
        on_ready=ready,
        handle_signals=True,
    )
    total = sum(result.counts.values())
    print(
        f"stopped ({result.stopped_by}) after {result.duration_s:.1f} s: {total} messages"
        + "".join(f"\n  {n:>7} {t}" for t, n in sorted(result.counts.items()))
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``hsnn-bag``; returns the exit status (2 on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "convert":
            status = _convert(args)
        elif args.command == "record":
            status = _record(args)
        else:
            from hsnn_perception.tools.bag_info import bag_info, format_info

            info = bag_info(args.bag, events_topic=args.events_topic)
            print(json.dumps(info, indent=1) if args.json else format_info(info))
            status = 0
        sys.stdout.flush()  # a closed pipe raises here, not in the interpreter's exit
        return status
    except BrokenPipeError:  # `hsnn-bag info BAG | head -1`: the reader has what it wanted
        return closed_pipe()
    except (ValueError, OSError) as exc:  # BagError, CliError, codec errors: all ValueError
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
