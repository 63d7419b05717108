"""Offline evaluation: a labelled event bag through the pipeline's core code, without ROS.

Same steps as the nodes: packets decoded (events.decode_packet), windowed on sensor time
(binning.EventWindower), binarised and run through the SNN runtime (snn_runtime.load_snn ...
run_window), accumulated (accumulator.accumulate / frames_to_channels), classified by ONNX Runtime
(classifier_backends.create_backend) or, for SNN-only bundles, by output spike counts. Energy per
stage is obtained the way the nodes obtain it (core.energy): measured where a meter is readable,
else modelled where a model applies, else unavailable.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsnn_perception.core.ann.readout import softmax, spike_count_readout
from hsnn_perception.core.energy import models as en
from hsnn_perception.core.errors import ExperimentError
from hsnn_perception.core.hybrid.accumulator import accumulate, frames_to_channels
from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.core.io.rosbag import EventBag, Label, read_event_bag
from hsnn_perception.evaluation.records import EvalRecord, ReplayResult


class EvaluationError(ExperimentError, ValueError):
    """The bag and the model cannot be evaluated together (names what does not fit)."""


@dataclass
class OfflineSettings:
    backend: str = "native"  # SNN runtime backend (snn_runtime.load_snn)
    chip: str = "loihi"  # energy model of the SNN part
    loihi_cores: int = 0  # 0: static power left out (unknown mapping)
    # energy model of the ANN part where nothing measures it (energy.ANN_DEVICE_PROFILES; as the
    # classifier node's energy_model_device; "" = none, the figure is then unavailable)
    ann_device: str = en.DEFAULT_ANN_DEVICE
    providers: str = "cpu"  # ONNX Runtime providers
    measure: bool = True  # use power meters where readable
    max_windows: int = 0  # 0: all
    min_label_overlap: float = 0.5  # share of a window a label must cover to be its truth
    progress: bool = True
    events_topic: str | None = None  # None: the bag's one events topic, found by type
    # Sensor -> model input, as the SNN node's parameters of the same names (core.filters)
    input_mapping: str = "scale"
    input_roi: tuple[int, ...] = ()


def label_for_window(labels: list[Label], t0: int, t1: int, min_overlap: float) -> Label | None:
    """The label covering the largest share of ``[t0, t1)``, if that share is >= ``min_overlap``."""
    best, best_cover = None, 0
    for lab in labels:
        if lab.start_us >= t1:
            break
        cover = min(lab.end_us, t1) - max(lab.start_us, t0)
        if cover > best_cover:
            best, best_cover = lab, cover
    if best is None or best_cover < min_overlap * (t1 - t0):
        return None
    return best


class _Stage:
    """Times (and, with a meter, measures) one stage of one window."""

    def __init__(self, meter: en.PowerMeter | None) -> None:
        self.meter = meter

    def run(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, float, tuple | None]:
        if self.meter is None:
            t0 = time.perf_counter()
            out = fn(*args)
            return out, time.perf_counter() - t0, None
        out, energy_j, power_w, latency = en.measure(self.meter, fn, *args)
        return out, latency, (energy_j, power_w)


def evaluate_offline(
    bag_path: Path | str,
    bundle_path: Path | str,
    settings: OfflineSettings | None = None,
) -> ReplayResult:
    """Evaluate ``bundle_path`` on the labelled event bag ``bag_path``."""
    s = settings or OfflineSettings()
    bundle = ModelBundle.load(bundle_path)
    bag = read_event_bag(bag_path, events_topic=s.events_topic)
    meter = en.cpu_meter() if s.measure else None
    if s.ann_device and s.ann_device not in en.ANN_DEVICE_PROFILES:
        raise EvaluationError(
            f"unknown ANN device profile {s.ann_device!r}; known: {sorted(en.ANN_DEVICE_PROFILES)}"
        )
    result = ReplayResult(
        bag=str(bag_path),
        bundle=str(bundle.path),
        mode="offline",
        labels=list(bundle.labels),
        settings={
            "backend": s.backend,
            "chip": s.chip,
            "loihi_cores": s.loihi_cores,
            "ann_device": s.ann_device,
            "providers": s.providers,
            "meter": meter.description if meter else "none readable",
            "model": bundle.name,
            "bin_us": bundle.bin_us,
            "timesteps": bundle.timesteps,
            "interval": bundle.interval,
            "events_topic": bag.events_topic,
            "input_mapping": s.input_mapping,
            "input_roi": list(s.input_roi),
        },
    )
    if not bag.labels:
        listed = sum(
            int(bag.report.expected.get(topic, 0) or 0)
            for topic, kind in bag.report.topics.items()
            if kind.endswith("GestureLabel")
        )
        result.notes.append(
            f"the bag lists {listed} label messages but none could be read (damaged): accuracy "
            "cannot be computed"
            if listed
            else "the bag has no labels: accuracy cannot be computed"
        )
    names = bag.label_names
    for cid, name in names.items():
        if cid < len(bundle.labels) and bundle.labels[cid] != name and name != str(cid):
            result.notes.append(
                f"class {cid} is {name!r} in the bag but {bundle.labels[cid]!r} in the model"
            )
    runner = _Runner(bundle, s, meter)
    try:
        _run(bag, bundle, s, runner, result)
    finally:
        runner.close()
    result.bag_report = bag.report.to_dict()
    return result


class _Runner:
    def __init__(self, bundle: ModelBundle, s: OfflineSettings, meter: Any) -> None:
        self.bundle, self.s, self.meter = bundle, s, meter
        self.snn = None
        self.ann = None
        self.macs = 0
        if bundle.snn_file is not None:
            from hsnn_perception.core.snn.runtime import load_snn

            self.snn = load_snn(
                bundle.snn_file, s.backend, (bundle.channels, bundle.height, bundle.width)
            )
        if bundle.ann_file is not None:
            from hsnn_perception.core.ann.backends import check_bundle_ann, create_backend
            from hsnn_perception.core.ann.macs import count_macs

            check_bundle_ann(bundle)

            self.ann = create_backend("onnxruntime", bundle.ann_file, providers=s.providers)
            self.macs = count_macs(bundle.ann_file, bundle.ann_input_shape)
        self.stage = _Stage(meter)

    def close(self) -> None:
        for part in (self.snn, self.ann):
            closer = getattr(part, "close", None)
            if closer is not None:
                closer()

    def window(self, frames: np.ndarray) -> tuple[np.ndarray, dict, dict, list]:
        """Frames (T, 2, h, w) -> (scores, latency per stage, EnergyFigure per stage, layers)."""
        b = self.bundle
        latency: dict[str, float] = {}
        figures: dict[str, en.EnergyFigure] = {}
        spikes = (frames > 0).astype(np.uint8)  # Loihi input spikes are binary (as snn_node)
        layers: list[dict[str, Any]] = []
        if self.snn is not None:
            (out, ops), t, _ = self.stage.run(self.snn.run_window, spikes)
            latency["snn"] = t
            figures["snn"] = self._snn_energy(ops)
            layers = [dict(d) for d in ops.per_layer]
        else:
            out = spikes
        (x,), t, measured = self.stage.run(
            lambda o: (frames_to_channels(accumulate(o[np.newaxis], b.interval)),), out
        )
        latency["bridge"] = t
        # As the bridge node: one addition per element of the SNN output window.
        figures["bridge"] = en.bridge_stage_energy(
            int(out.size), int(out.sum()), t, self.meter, None if measured is None else measured[0]
        )
        if self.ann is not None:
            logits, t, measured = self.stage.run(self.ann.infer, x.astype(np.float32))
            latency["classifier"] = t
            figures["classifier"] = self._ann_energy(t, measured)
        else:
            logits, t, measured = self.stage.run(spike_count_readout, x, b.num_classes)
            latency["classifier"] = t
            figures["classifier"] = self._cpu_figure("classifier", t, measured)
        logits = np.asarray(logits, dtype=np.float32).reshape(-1)
        if logits.size != b.num_classes or not np.isfinite(logits).all():
            raise EvaluationError(f"the classifier gave invalid logits {logits[:16]}")
        return softmax(logits), latency, figures, layers

    def _snn_energy(self, ops: Any) -> en.EnergyFigure:
        # The SNN node's figure (one function for both): measured on a Loihi board when Lava's
        # profiler gave one, else modelled from the op counts; the host's wall time is the
        # record's per-stage latency.
        s = self.s
        return en.snn_stage_energy(
            ops,
            self.bundle.timesteps,
            chip=s.chip,
            cores=int(s.loihi_cores),
            ran_on=str(getattr(self.snn, "backend_name", s.backend)),
            measurement=getattr(self.snn, "last_measurement", None),
            measurement_error=getattr(self.snn, "probe_error", None),
        )

    def _cpu_figure(
        self, stage: str, latency: float, measured: tuple | None, **counts: int
    ) -> en.EnergyFigure:
        if measured is not None:
            return en.measured_figure(stage, "cpu", self.meter, measured[0], latency, **counts)
        fig = en.unavailable(stage, "cpu", "no readable CPU energy counter", latency)
        for k, v in counts.items():
            setattr(fig, k, v)
        return fig

    def _ann_energy(self, latency: float, measured: tuple | None) -> en.EnergyFigure:
        device = str(getattr(self.ann, "device", "cpu"))
        return en.classifier_stage_energy(
            self.macs,
            latency,
            device,
            str(getattr(self.ann, "name", device)),
            self.meter,
            None if measured is None else measured[0],
            self.s.ann_device,
        )


def _run(
    bag: EventBag, bundle: ModelBundle, s: OfflineSettings, runner: _Runner, result: ReplayResult
) -> None:
    from hsnn_perception.core.events.binning import BinningError
    from hsnn_perception.core.events.codecs import EventCodecError
    from hsnn_perception.core.events.filters import MappedWindower
    from hsnn_perception.core.sources.bag import model_windower

    drops: Counter = Counter()
    windower: MappedWindower | None = None
    geometry: tuple[int, int] | None = None
    pending_decode = 0.0
    expected = bag.report.expected.get(bag.events_topic, 0)
    bar = _progress(s.progress, expected)
    done = False
    try:
        for pkt in bag.packets():
            bar.update(1)
            t0 = time.perf_counter()
            try:
                events = pkt.decode(strict=False, drops=drops)
            except EventCodecError as exc:
                drops["undecodable packet"] += 1
                result.notes.append(f"packet {pkt.seq}: {exc}")
                continue
            result.events_read += int(events.size)
            if geometry is None:
                geometry = (pkt.height, pkt.width)
                try:  # mapped onto the model input as the SNN node maps it
                    windower = model_windower(
                        geometry,
                        bundle.bin_us,
                        bundle.timesteps,
                        (bundle.height, bundle.width),
                        s.input_mapping,
                        s.input_roi,
                    )
                except ValueError as exc:
                    raise EvaluationError(f"bag sensor {pkt.width}x{pkt.height}: {exc}") from exc
                if (pkt.height, pkt.width) != (bundle.sensor_height, bundle.sensor_width):
                    result.notes.append(
                        f"bag sensor {pkt.width}x{pkt.height} differs from the model's "
                        f"{bundle.sensor_width}x{bundle.sensor_height}: mapped onto the model "
                        f"input {bundle.width}x{bundle.height} ({s.input_mapping}"
                        f"{f', roi {list(s.input_roi)}' if s.input_roi else ''})"
                    )
            elif (pkt.height, pkt.width) != geometry:
                drops["packet with another sensor geometry"] += int(events.size)
                continue
            try:
                windows = windower.push(events)
            except BinningError as exc:
                drops["events rejected by the windower"] += int(events.size)
                result.notes.append(f"packet {pkt.seq}: {exc}")
                continue
            pending_decode += time.perf_counter() - t0
            for w in windows:
                _classify(w, bag, s, runner, result, pending_decode / len(windows))
                if s.max_windows and len(result.records) >= s.max_windows:
                    done = True
                    break
            if windows:
                pending_decode = 0.0
            if done:
                break
        if windower is not None and not done:
            for w in windower.flush():
                _classify(w, bag, s, runner, result, pending_decode)
    finally:
        bar.close()
    if windower is not None:
        if windower.mapped_out_events:
            drops["events outside the mapped region (roi / crop)"] += windower.mapped_out_events
        if windower.late_events:
            drops["late events (older than the window being filled)"] += windower.late_events
        if windower.skipped_windows:
            drops["silent windows skipped (long gap)"] += windower.skipped_windows
    result.dropped = dict(drops)
    if geometry is None:
        result.notes.append("the bag has no event packets")


def _classify(
    w: Any, bag: EventBag, s: OfflineSettings, runner: _Runner, result: ReplayResult, drv_s: float
) -> None:
    scores, latency, figures, layers = runner.window(w.frames)
    latency = {"driver": drv_s, **latency}
    # Decoding and windowing run per packet, not per window: their time is spread over the
    # windows a packet completes, and no meter reading can be attributed to one window.
    figures["driver"] = en.unavailable(
        "driver", "cpu", "decode + windowing on this host: not metered per window", drv_s
    )
    ordered = {k: figures[k] for k in ("driver", "snn", "bridge", "classifier") if k in figures}
    ordered["total"] = en.total(list(ordered.values()))
    lab = label_for_window(bag.labels, w.t_start_us, w.t_end_us, s.min_label_overlap)
    result.records.append(
        EvalRecord(
            window_id=int(w.window_id),
            t_start_us=int(w.t_start_us),
            t_end_us=int(w.t_end_us),
            label=None if lab is None else lab.class_id,
            prediction=int(np.argmax(scores)),
            scores=[float(v) for v in scores],
            latency_s=latency,
            energy=ordered,
            n_events=int(w.n_events),
            layers=layers,
        )
    )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(enabled: bool, total: int) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total or None, unit="pkt", desc="evaluating", leave=False)
