"""Offline evaluation: a labelled event bag through the pipeline's core code, without ROS.

Same steps as the nodes: packets decoded as the SNN node decodes them (the same
stream.PacketStreamDecoder: EVT3 state carried from packet to packet, mono and evt3 decoded
straight into the windows), windowed on sensor time and mapped onto the model input
(binning.EventWindower, filters.MappedWindower), then the per-window pipeline the
nodes run stage by stage (core/hybrid/pipeline.py: binarise, SNN backend, accumulator, ONNX
Runtime or, for SNN-only bundles, output spike counts). Energy per stage is obtained the way the
nodes obtain it (core/energy): measured where a meter is readable, else modelled where a model
applies, else unavailable.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsnn_perception.core.energy.figure import total, unavailable
from hsnn_perception.core.energy.meters import PowerMeter, cpu_meter
from hsnn_perception.core.energy.profiles import ANN_DEVICE_PROFILES, DEFAULT_ANN_DEVICE
from hsnn_perception.core.errors import ExperimentError
from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.core.hybrid.pipeline import (
    BridgeStage,
    ClassifierStage,
    HybridPipeline,
    InvalidLogitsError,
    SnnStage,
)
from hsnn_perception.core.io.bag.msgtypes import Label
from hsnn_perception.core.io.bag.read import EventBag, read_event_bag
from hsnn_perception.core.registry import ENERGY_STAGES
from hsnn_perception.evaluation.records import EvalRecord, ReplayResult


class EvaluationError(ExperimentError, ValueError):
    """The bag and the model cannot be evaluated together (names what does not fit)."""


@dataclass
class OfflineSettings:
    backend: str = "native"  # SNN runtime backend (core/snn load_snn)
    chip: str = "loihi"  # energy model of the SNN part
    loihi_cores: int = 0  # 0: static power left out (unknown mapping)
    # energy model of the ANN part where nothing measures it (energy.ANN_DEVICE_PROFILES; as the
    # classifier node's energy_model_device; "" = none, the figure is then unavailable)
    ann_device: str = DEFAULT_ANN_DEVICE
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


def evaluate_offline(
    bag_path: Path | str,
    bundle_path: Path | str,
    settings: OfflineSettings | None = None,
) -> ReplayResult:
    """Evaluate ``bundle_path`` on the labelled event bag ``bag_path``."""
    s = settings or OfflineSettings()
    bundle = ModelBundle.load(bundle_path)
    bag = read_event_bag(bag_path, events_topic=s.events_topic)
    meter = cpu_meter() if s.measure else None
    if s.ann_device and s.ann_device not in ANN_DEVICE_PROFILES:
        raise EvaluationError(
            f"unknown ANN device profile {s.ann_device!r}; known: {sorted(ANN_DEVICE_PROFILES)}"
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
    pipeline = open_pipeline(bundle, s, meter)
    try:
        _run(bag, bundle, s, pipeline, result)
    finally:
        close_pipeline(pipeline)
    result.bag_report = bag.report.to_dict()
    return result


def open_pipeline(
    bundle: ModelBundle, s: OfflineSettings, meter: PowerMeter | None
) -> HybridPipeline:
    """The bundle's stages as the nodes build them (core/hybrid/pipeline.py), with one host
    meter for the bridge and classifier (what this machine can read)."""
    snn = None
    if bundle.snn_file is not None:
        from hsnn_perception.core.snn.runtime import load_snn

        backend = load_snn(
            bundle.snn_file, s.backend, (bundle.channels, bundle.height, bundle.width)
        )
        snn = SnnStage(backend, bundle.timesteps, chip=s.chip, cores=int(s.loihi_cores))
    ann, macs = None, 0
    if bundle.ann_file is not None:
        from hsnn_perception.core.ann.backends import check_bundle_ann, create_backend
        from hsnn_perception.core.ann.macs import count_macs

        check_bundle_ann(bundle)
        try:
            ann = create_backend("onnxruntime", bundle.ann_file, providers=s.providers)
            macs = count_macs(bundle.ann_file, bundle.ann_input_shape)
        except BaseException:
            if snn is not None:
                snn.snn.close()
            raise
    classifier = ClassifierStage(
        ann, bundle.num_classes, macs=macs, meter=meter, model_device=s.ann_device
    )
    return HybridPipeline(snn, BridgeStage(bundle.interval, meter), classifier)


def close_pipeline(pipeline: HybridPipeline) -> None:
    """Release the SNN backend and the classifier session (workers, boards, GPU memory)."""
    parts = [pipeline.snn.snn if pipeline.snn else None]
    parts.append(pipeline.classifier.backend if pipeline.classifier else None)
    for part in parts:
        if part is not None:
            part.close()


def _run(
    bag: EventBag,
    bundle: ModelBundle,
    s: OfflineSettings,
    pipeline: HybridPipeline,
    result: ReplayResult,
) -> None:
    from hsnn_perception.core.events.binning import BinningError
    from hsnn_perception.core.events.codecs import EventCodecError
    from hsnn_perception.core.events.filters import MappedWindower
    from hsnn_perception.core.events.stream import PacketStreamDecoder
    from hsnn_perception.core.sources.bag import model_windower

    drops: Counter = Counter()
    # The SNN node's decoder and windowing: EVT3 state carried from packet to packet (a stock
    # driver cuts the raw stream anywhere; decoded alone, each packet loses its first events),
    # mono and evt3 decoded straight into the windows.
    decoder = PacketStreamDecoder(strict_standalone=False, drops=drops)
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
                drops["packets with another sensor geometry"] += 1
                continue
            assert windower is not None
            try:
                n_events, windows = decoder.decode_into(
                    windower,
                    pkt.payload,
                    pkt.encoding,
                    pkt.time_base_ns,
                    pkt.width,
                    pkt.height,
                    pkt.is_bigendian,
                    seq=pkt.seq,
                )
            except BinningError as exc:
                drops["packets rejected by the windower"] += 1
                result.notes.append(f"packet {pkt.seq}: {exc}")
                continue
            except (EventCodecError, ValueError) as exc:
                drops["undecodable packet"] += 1
                result.notes.append(f"packet {pkt.seq}: {exc}")
                continue
            result.events_read += n_events
            pending_decode += time.perf_counter() - t0
            for w in windows:
                _classify(w, bag, s, pipeline, result, pending_decode / len(windows))
                if s.max_windows and len(result.records) >= s.max_windows:
                    done = True
                    break
            if windows:
                pending_decode = 0.0
            if done:
                break
        if windower is not None and not done:
            for w in windower.flush():
                _classify(w, bag, s, pipeline, result, pending_decode)
    finally:
        bar.close()
    if windower is not None:
        if windower.mapped_out_events:
            drops["events outside the mapped region (roi / crop)"] += windower.mapped_out_events
        if windower.late_events:
            drops["late events (older than the window being filled)"] += windower.late_events
        if windower.skipped_windows:
            drops["silent windows skipped (long gap)"] += windower.skipped_windows
    if decoder.seq_gaps.lost:
        drops["packets missing from the bag (seq gaps)"] += decoder.seq_gaps.lost
    result.dropped = dict(drops)
    if geometry is None:
        result.notes.append("the bag has no event packets")


def _classify(
    w: Any,
    bag: EventBag,
    s: OfflineSettings,
    pipeline: HybridPipeline,
    result: ReplayResult,
    drv_s: float,
) -> None:
    try:
        r = pipeline.window(w.frames)
    except InvalidLogitsError as exc:
        raise EvaluationError(str(exc)) from None
    scores = r.scores
    latency = {"driver": drv_s, **r.latency_s}
    figures = dict(r.figures)
    layers = [] if r.ops is None else [dict(d) for d in r.ops.per_layer]
    # Decoding and windowing run per packet, not per window: their time is spread over the
    # windows a packet completes, and no meter reading can be attributed to one window.
    figures["driver"] = unavailable(
        "driver", "cpu", "decode + windowing on this host: not metered per window", drv_s
    )
    ordered = {k: figures[k] for k in ENERGY_STAGES if k in figures}
    ordered["total"] = total(list(ordered.values()))
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
