"""DDS replay: a labelled event bag played through the REAL pipeline nodes over DDS, collected into
the same :class:`~hsnn_perception.evaluation.records.ReplayResult` as the offline evaluation.

The driver node reads the bag (``source: rosbag``, :func:`hsnn_perception.core.sources.bag.
bag_packets`) and publishes it at ``speed`` times sensor pace (0: as fast as the driver's timer
allows); the SNN, bridge and classifier nodes run as separate processes (or composed in one);
:func:`hsnn_perception.tools.session.run_session` collects Classification and EnergyReport
messages per window. The windows the bag spans are computed beforehand from the bag with the
same windower the SNN node uses, so a window that never came out is counted as dropped, and
ground truth is matched to windows with the offline rule (a label covering at least half of the
window), so both modes are scored alike.

Events travel best-effort (sensor QoS), so at sensor pace a consumer that falls behind loses
packets rather than blocking the driver, as with a live camera. As fast as possible (``speed``
0) the driver's flow control (``core.sources.streams.WindowFlowControl``) holds the bag back while
``flow_max_windows`` windows are unclassified, and the events travel reliably: the replay goes as
fast as the pipeline keeps up and loses nothing (``flow_max_windows=0`` turns both off). What
was lost is measured from the nodes' own counters on ``/diagnostics`` (driver ``published.*``
against SNN node ``received.*``) and reported in ``dropped``.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsnn_perception.core.errors import OrchestrationError
from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.core.sources.bag import BagPacketStream, WindowSpan, bag_packets, bag_windows

DIAG_PERIOD_S = 0.2  # nodes' diagnostics period during a replay: final counters arrive in time
# The SNN node ends the last (partial) window after this long without packets. A bag is finite,
# so waiting longer than the node's default costs only this much at the end of the replay.
FLUSH_IDLE_S = 2.0


class ReplayError(OrchestrationError, ValueError):
    """A DDS replay cannot be set up or did not produce results (says why)."""


@dataclass
class ReplaySettings:
    snn_backend: str = "native"
    classifier_backend: str = "onnxruntime"
    speed: float = 1.0  # 1 = sensor pace, 0 = as fast as possible
    composed: bool = False  # all nodes in one process
    namespace: str = ""  # empty: a random one (several replays may share a DDS domain)
    timeout_s: float = 0.0  # 0: from the bag's duration and the speed
    startup_timeout_s: float = 60.0
    chip: str = "loihi"  # SNN node energy_chip
    loihi_cores: int = 0  # SNN node loihi_cores
    ann_device: str = ""  # classifier energy_model_device ("" keeps the node's default)
    providers: str = ""  # classifier providers ("" keeps the node's default)
    flow_max_windows: int = 4  # speed 0: windows in flight before the driver waits (0: no wait)
    # The driver publishes /clock in sensor time and the other nodes run on it (use_sim_time),
    # as a graph fed by `ros2 bag play --clock` does.
    use_sim_time: bool = True
    min_label_overlap: float = 0.5  # as OfflineSettings
    # Sensor -> model input, as the SNN node's input_mapping / input_roi (x, y, width, height on
    # the sensor; empty: all of it), so a bag of any sensor geometry runs.
    input_mapping: str = "scale"
    input_roi: tuple[int, ...] = ()
    log_dir: Path | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> parameters


def _int(values: dict[str, str], key: str) -> int:
    try:
        return int(float(values.get(key, 0)))
    except ValueError:
        return 0


def check_mapping(
    bag: Path,
    sensor_shape: tuple[int, int],
    model: ModelBundle,
    mapping: str,
    roi: tuple[int, ...],
) -> None:
    """Refuse, before anything is started, a bag whose sensor the SNN node could not map onto
    the model's input with ``mapping`` / ``roi`` (it would reject every packet)."""
    from hsnn_perception.core.events.filters import model_input_chain

    height, width = sensor_shape
    where = f"input_mapping {mapping}" + (f", input_roi {list(roi)}" if roi else "")
    target = f"the model input {model.width}x{model.height} ({where})"
    if width <= 0 or height <= 0:
        raise ReplayError(
            f"{bag}: its event packets carry no sensor geometry ({width}x{height}), so the SNN "
            f"node cannot map them onto {target}; nothing was started"
        )
    try:
        model_input_chain((height, width), (model.height, model.width), mapping, roi)
    except ValueError as exc:  # FilterConfigError
        raise ReplayError(
            f"{bag}: its sensor {width}x{height} cannot be mapped onto {target}: {exc}; "
            "nothing was started"
        ) from None


def default_timeout(duration_s: float, speed: float, n_windows: int) -> float:
    """Seconds to wait for all windows: the bag's play time plus generous compute time."""
    play = duration_s / speed if speed > 0 else 0.0
    return 30.0 + 1.5 * play + 0.5 * n_windows


def replay_dds(
    bag: Path | str,
    bundle: Path | str,
    snn_backend: str = "native",
    classifier_backend: str = "onnxruntime",
    speed: float = 1.0,
    composed: bool = False,
    settings: ReplaySettings | None = None,
    on_window: Callable[[Any], None] | None = None,
    events_topic: str | None = None,
) -> Any:
    """Play ``bag`` through the pipeline nodes over DDS with model ``bundle``; return the
    :class:`~hsnn_perception.evaluation.records.ReplayResult` (``mode="dds"``).

    The positional options override those in ``settings``. ``on_window`` gets each
    ``evaluation.records.EvalRecord`` as its classification arrives. Raises :class:`ReplayError`
    (or ``BagError`` / ``BundleError``) on bad input, ``session.PipelineError`` if the nodes do
    not come up.
    """
    from hsnn_perception.evaluation.offline import label_for_window
    from hsnn_perception.evaluation.records import ReplayResult
    from hsnn_perception.graph import pipeline, qualified_name
    from hsnn_perception.tools.session import run_session

    s = settings or ReplaySettings()
    s.snn_backend, s.classifier_backend = snn_backend, classifier_backend
    s.speed, s.composed = float(speed), bool(composed)
    if not s.speed >= 0 or math.isinf(s.speed):
        raise ReplayError(
            f"speed must be a finite number >= 0 (0: as fast as possible), got {speed}"
        )
    model = ModelBundle.load(bundle)
    bag = Path(bag)
    stream, width, height = bag_packets(bag, events_topic=events_topic)
    # Read it to the end now: that closes its reader (an sqlite3 bag left open while another
    # reader of the same file closes printed an apsw.BusyError traceback at garbage collection)
    # and completes stream.report (what reading skipped) for the report.
    for _ in stream:
        pass
    check_mapping(bag, (height, width), model, s.input_mapping, s.input_roi)
    spans = bag_windows(
        bag,
        model.bin_us,
        model.timesteps,
        model.height,
        model.width,
        mapping=s.input_mapping,
        roi=s.input_roi,
        events_topic=events_topic,
    )
    if not spans:
        raise ReplayError(f"{bag} spans no window of the model: nothing to classify")
    labels = list(stream.labels)
    duration_s = (spans[-1].t_end_us - spans[0].t_start_us) * 1e-6
    namespace = s.namespace or f"hsnn_replay_{random.randint(0, 10**6)}"
    overrides: dict[str, dict[str, Any]] = {
        name: {"diagnostics_period_s": DIAG_PERIOD_S, "use_sim_time": s.use_sim_time}
        for name in ("snn_feature", "accumulator_bridge", "classifier", "energy_aggregator")
    }
    # The driver is the clock: it publishes sensor time on /clock and runs on the host's.
    overrides["event_driver"] = {
        "diagnostics_period_s": DIAG_PERIOD_S,
        "publish_clock": s.use_sim_time,
        "use_sim_time": False,
        "bag_events_topic": events_topic or "",  # the topic the offline reading above used
    }
    # A stalled driver (a busy host) must not end a window early: its later events would be late.
    overrides["snn_feature"].update(
        energy_chip=s.chip,
        loihi_cores=int(s.loihi_cores),
        flush_idle_s=FLUSH_IDLE_S,
        input_mapping=s.input_mapping,
        input_roi=[int(v) for v in s.input_roi] or [0, 0, 0, 0],
    )
    # At speed 0 the graph turns the driver's flow control and reliable events on (lossless);
    # flow_max_windows=0 turns both off again, to measure what a flooded pipeline drops.
    flow = s.speed == 0 and s.flow_max_windows > 0
    if flow:
        overrides["event_driver"]["flow_max_windows"] = int(s.flow_max_windows)
    elif s.speed == 0:
        overrides["event_driver"].update(flow_control=False, events_qos="sensor")
        overrides["snn_feature"]["events_qos"] = "sensor"
    if s.ann_device:  # "none": no model, the classifier's energy is then unavailable
        overrides["classifier"]["energy_model_device"] = (
            "" if s.ann_device == "none" else s.ann_device
        )
    if s.providers:
        overrides["classifier"]["providers"] = s.providers
    for name, params in s.overrides.items():
        overrides.setdefault(name, {}).update(params)
    specs = pipeline(
        model=str(model.path),
        source="rosbag",
        source_path=str(bag.resolve()),
        snn_backend=s.snn_backend,
        classifier_backend=s.classifier_backend,
        speed=s.speed,
        overrides=overrides,
    )
    timeout = s.timeout_s or default_timeout(duration_s, s.speed, len(spans))
    started = time.monotonic()
    session = run_session(
        specs,
        len(spans),
        namespace=namespace,
        composed=s.composed,
        timeout_s=timeout,
        startup_timeout_s=s.startup_timeout_s,
        on_classification=on_window,
        log_dir=s.log_dir,
        # two status periods after the last classification: the nodes' final counters are in
        settle_s=2 * DIAG_PERIOD_S,
    )
    wall_s = time.monotonic() - started

    result = ReplayResult(
        bag=str(bag),
        bundle=str(model.path),
        mode="dds",
        labels=list(model.labels),
        settings={
            "backend": s.snn_backend,
            "classifier_backend": s.classifier_backend,
            "speed": s.speed,
            "composed": s.composed,
            "flow_control": f"at most {s.flow_max_windows} windows in flight" if flow else "off",
            "clock": "sim time: /clock from the driver in sensor time"
            if s.use_sim_time
            else "host",
            "namespace": namespace,
            "ros_domain_id": os.environ.get("ROS_DOMAIN_ID", "0"),
            "chip": s.chip,
            "loihi_cores": s.loihi_cores,
            "ann_device": s.ann_device or "node default",
            "model": model.name,
            "input_mapping": s.input_mapping,
            "input_roi": list(s.input_roi),
            "sensor": f"{width}x{height}",
            "bin_us": model.bin_us,
            "timesteps": model.timesteps,
            "interval": model.interval,
            "wall_s": round(wall_s, 3),
        },
    )
    by_id = {w.window_id: w for w in spans}
    disagree = 0
    for rec in session.records:
        monitor_label = rec.label  # the label at the window's start, as the monitor saw it
        span: WindowSpan | None = by_id.get(rec.window_id)
        rec.t_end_us = rec.t_start_us + model.window_us
        if span is not None:
            rec.n_events = span.n_events
        lab = label_for_window(labels, rec.t_start_us, rec.t_end_us, s.min_label_overlap)
        rec.label = None if lab is None else lab.class_id
        if monitor_label is not None and monitor_label != rec.label:
            disagree += 1
        result.records.append(rec)
    if disagree:
        result.notes.append(
            f"{disagree} windows: the monitor's label (at the window start) differs from the "
            f"label covering >= {s.min_label_overlap:.0%} of the window, which is used"
        )
    if not labels:
        result.notes.append("the bag has no labels: accuracy cannot be computed")
    result.bag_report = stream.report.to_dict()
    result.events_read = sum(w.n_events for w in spans)
    status = {n: session.diagnostics.get(qualified_name(namespace, n), {}) for n in NODES_READ}
    result.dropped = _drops(status, spans, result)
    result.lost = lost_counts(status)
    return result


# Where each hop's loss is counted (/diagnostics keys of the receiving node), and what is lost.
LOSS_COUNTERS = {
    "snn_feature": {"lost.packets": "event packets (seq gaps at the SNN node)"},
    "accumulator_bridge": {"lost.windows": "snn/spikes windows (window-id gaps at the bridge)"},
    "classifier": {"lost.windows": "tensors windows (window-id gaps at the classifier)"},
    "energy_aggregator": {
        f"lost.windows.{stage}": f"{stage} energy reports (window-id gaps at the aggregator)"
        for stage in ("snn", "bridge", "classifier")
    },
}


# The nodes whose final /diagnostics the report reads.
NODES_READ = ("event_driver", "snn_feature", *LOSS_COUNTERS)


def lost_counts(diagnostics: dict[str, dict[str, str]]) -> dict[str, int]:
    """The lost.* counters of the nodes' last /diagnostics (node name -> key/values), by hop;
    zero counts are kept (a hop counted and lost nothing), unreported hops are left out."""
    lost: dict[str, int] = {}
    for node, keys in LOSS_COUNTERS.items():
        values = diagnostics.get(node, {})
        for key, what in keys.items():
            if key in values:
                lost[what] = _int(values, key)
    return lost


def _drops(
    status: dict[str, dict[str, str]], spans: list[WindowSpan], result: Any
) -> dict[str, int]:
    """What was dropped or lost on the way, from the windows classified and the nodes' final
    /diagnostics (``status``: node name -> key -> value)."""
    drops: dict[str, int] = {}
    got = {r.window_id for r in result.records}
    missing = [w.window_id for w in spans if w.window_id not in got]
    if missing:
        drops["windows the bag spans with no classification (lost or timed out)"] = len(missing)
        result.notes.append(f"windows never classified: {missing[:20]}")
    extra = sorted(got - {w.window_id for w in spans})
    if extra:
        result.notes.append(f"classified windows the bag does not span: {extra[:20]}")
    driver, snn = status.get("event_driver", {}), status.get("snn_feature", {})
    if not driver or not snn:
        result.notes.append(
            "no final /diagnostics from the driver or the SNN node: event losses unknown"
        )
        return drops
    lost_packets = _int(driver, "published.packets") - _int(snn, "received.packets")
    lost_events = _int(driver, "published.events") - _int(snn, "received.events")
    if lost_packets > 0:
        drops["event packets lost between driver and SNN node (best-effort QoS)"] = lost_packets
    if lost_events > 0:
        drops["events lost between driver and SNN node (best-effort QoS)"] = lost_events
    # The node flushes the last window once the stream went idle; any other flush ended a window
    # before all its events were in (they then count as late events).
    early = _int(snn, "flushed.windows") - 1
    if early > 0:
        drops["windows ended early by the SNN node's idle flush"] = early
    if _int(driver, "flow.stalls"):
        drops["windows given up by the driver's flow control (no classification came)"] = _int(
            driver, "flow.stalls"
        )
    for key in snn:
        if key.startswith("dropped.events."):  # EVT3 events no decoder state could place
            drops[f"events dropped by the SNN node's decoder ({key[15:]})"] = _int(snn, key)
    for key, why in (
        ("late_events", "late events (older than the window being filled)"),
        ("skipped_windows", "silent windows skipped (long gap)"),
        ("out_of_range_events", "events far from the window being filled (time jumped)"),
        ("errors.packet", "event packets rejected by the SNN node"),
    ):
        if _int(snn, key):
            drops[why] = _int(snn, key)
    result.settings["driver_published_packets"] = _int(driver, "published.packets")
    result.settings["snn_received_packets"] = _int(snn, "received.packets")
    return drops


def _snn_input(rec: Any) -> tuple[int, int, int] | None:
    fig = rec.energy.get("snn")
    if fig is None:
        return None
    return (fig.synaptic_ops, fig.neuron_updates, fig.spikes)


def offline_vs_dds(offline: Any, dds: Any) -> dict[str, Any]:
    """Window-by-window comparison of two results of the same bag and model: windows in both,
    windows whose SNN work differs (synaptic ops, neuron updates, spikes: the SNN saw other
    events, e.g. packets lost over DDS), windows where the predictions differ (all, and among
    those whose SNN work is the same), largest score difference."""
    a = {r.window_id: r for r in offline.records}
    b = {r.window_id: r for r in dds.records}
    common = sorted(set(a) & set(b))
    differ = [w for w in common if a[w].prediction != b[w].prediction]
    other_input = [w for w in common if _snn_input(a[w]) != _snn_input(b[w])]
    score_diff = [
        max(abs(x - y) for x, y in zip(a[w].scores, b[w].scores, strict=True))
        for w in common
        if a[w].scores and len(a[w].scores) == len(b[w].scores)
    ]
    return {
        "windows_offline": len(a),
        "windows_dds": len(b),
        "common": len(common),
        "only_offline": sorted(set(a) - set(b)),
        "only_dds": sorted(set(b) - set(a)),
        "snn_work_differs": other_input,
        "predictions_differ": differ,
        "predictions_differ_same_snn_work": [w for w in differ if w not in other_input],
        "max_score_diff": max(score_diff) if score_diff else None,
    }


__all__ = [
    "BagPacketStream",
    "ReplayError",
    "check_mapping",
    "ReplaySettings",
    "default_timeout",
    "offline_vs_dds",
    "replay_dds",
]
