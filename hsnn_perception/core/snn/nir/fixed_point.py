"""layers -> Loihi fixed point: :class:`SpikingLayer` objects quantised to netx HDF5 (exact where
the layer already is fixed point, else with the ANN-to-SNN converter's scheme and calibration)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.snn.nir.layers import (
    DECAY_UNITY,
    INT_TOL,
    MAX_BIAS,
    NirError,
    SpikingLayer,
    simulate,
)
from hsnn_perception.core.snn.quantise import (
    CURRENT_MAX,
    GAIN_PASSES,
    VTH_MAX,
    WEIGHT_MAX,
    even_weights,
    rate_gain,
    write_netx,
)


@dataclass
class ImportedLayer:
    """How one layer was brought to Loihi's fixed point (for the manifest and the report)."""

    name: str
    kind: str
    out_shape: tuple[int, ...]
    method: str  # "exact" (already integers) or "quantised"
    i_decay: int
    v_decay: int
    vth: int
    max_abs_weight: int
    rate_gains: list[float] = field(default_factory=list)
    float_agreement: float | None = None  # fraction of (neuron, step) equal to the float model


def _is_int(values: NDArray[Any]) -> bool:
    values = np.asarray(values, dtype=np.float64)
    return bool(np.all(np.abs(values - np.round(values)) <= INT_TOL * np.maximum(1, values)))


def _decay_int(layer: SpikingLayer, attr: str) -> tuple[int, bool]:
    scaled = getattr(layer, attr) * DECAY_UNITY
    return int(round(scaled)), abs(scaled - round(scaled)) <= INT_TOL * DECAY_UNITY


def fixed_point(
    layer: SpikingLayer,
) -> tuple[NDArray[Any] | None, NDArray[Any] | None, int] | None:
    """``(weights, bias, vThMant)`` as integers if ``layer`` already is in Loihi's fixed point
    (integer weights within 8 bits, integer bias and threshold, decays that are multiples of
    1/4096), else None."""

    if not _decay_int(layer, "i_decay")[1] or not _decay_int(layer, "v_decay")[1]:
        return None
    if not _is_int(np.array([layer.threshold])) or not 0 <= round(layer.threshold) <= VTH_MAX:
        return None
    w = layer.weight
    if w is not None and (not _is_int(w) or np.abs(np.round(w)).max(initial=0) > WEIGHT_MAX):
        return None
    b = layer.bias
    if b is not None and (not _is_int(b) or np.abs(np.round(b)).max(initial=0) > MAX_BIAS):
        return None
    return (
        None if w is None else np.round(w).astype(np.int64),
        None if b is None else np.round(b).astype(np.int64),
        int(round(layer.threshold)),
    )


def _spec(
    layer: SpikingLayer, weight: NDArray[Any] | None, bias: NDArray[Any] | None, vth: int
) -> dict[str, Any]:
    neuron = {
        "neuron/type": "CUBA",
        "neuron/iDecay": _decay_int(layer, "i_decay")[0],
        "neuron/vDecay": _decay_int(layer, "v_decay")[0],
        "neuron/vThMant": int(vth),
        "neuron/refDelay": 1,
        "neuron/gradedSpike": False,
    }
    c, h, w = layer.out_shape
    if bias is not None:
        # netx reads a conv bias per channel ([C]) or per neuron in Lava's (W, H, C) order.
        per_channel = bias.reshape(c, -1)
        bias = (
            per_channel[:, 0]
            if np.all(per_channel == per_channel[:, :1])
            else bias.reshape(c, h, w).transpose(2, 1, 0)
        )
    if layer.kind == "input":
        return {"shape": np.array(layer.out_shape), **neuron}
    if layer.kind == "conv":
        assert weight is not None
        spec = {
            "shape": np.array(layer.out_shape),
            "inChannels": layer.in_shape[0],
            "outChannels": c,
            "kernelSize": np.array(weight.shape[2:]),
            "stride": np.array(layer.stride),
            "padding": np.array(layer.padding),
            "dilation": np.array(layer.dilation),
            "groups": layer.groups,
            "weight": weight,
        }
    else:
        assert weight is not None
        spec = {
            "shape": np.array([c]),
            "inFeatures": weight.shape[1],
            "outFeatures": c,
            "weight": weight,
        }
    if bias is not None:
        spec["bias"] = bias
    return {**spec, **neuron}


def _quantise_layer(layer: SpikingLayer) -> tuple[NDArray[Any], NDArray[Any] | None, int]:
    """The ANN-to-SNN converter's quantisation (hsnn_perception.training.convert._quantise):
    weights normalised by the threshold and scaled by ``vThMant = floor(254 / max|w|)`` so the
    largest becomes 254, rounded to even integers in [-254, 254], bias rounded. Where the
    converter refuses a layer whose worst-case current (all inputs spiking) would overflow
    Loihi's 24-bit current, the scale is lowered until it fits instead: wide dense layers of
    trained networks hit that bound with small weights."""

    if not layer.threshold > 0:
        raise NirError(f"layer {layer.name}: threshold 0 cannot be scaled to Loihi's fixed point")
    assert layer.weight is not None
    w = layer.weight / layer.threshold
    n_out = w.shape[0]
    bias = np.zeros(layer.num_neurons) if layer.bias is None else np.asarray(layer.bias)
    b = bias / layer.threshold
    peak = float(np.abs(w).max())
    if peak == 0:
        raise NirError(f"layer {layer.name}: all weights are zero")
    rows = np.abs(w).reshape(n_out, -1).sum(axis=1)
    b_rows = np.abs(b).reshape(n_out, -1).max(axis=1)
    scale = min(VTH_MAX, math.floor(WEIGHT_MAX / peak))
    while scale >= 1:
        w_int = even_weights(w * scale)
        b_int = np.round(b * scale)
        worst = np.abs(w_int).reshape(n_out, -1).sum(axis=1) + np.abs(b_int).reshape(n_out, -1).max(
            axis=1
        )
        if worst.max() < CURRENT_MAX:
            break
        # The largest fitting scale, less the rounding (each weight may round up by 2).
        fit = (CURRENT_MAX - 1 - 2 * w[0].size) / float((rows + b_rows).max())
        scale = min(scale - 1, math.floor(fit))
    if scale < 1:
        raise NirError(
            f"layer {layer.name}: its weights cannot be scaled into Loihi's 24-bit current "
            "even with threshold 1"
        )
    if np.abs(b_int).max(initial=0) > MAX_BIAS:
        raise NirError(f"layer {layer.name}: the bias does not fit Loihi's 16-bit bias mantissa")
    return w_int.astype(np.int64), (b_int.astype(np.int64) if np.any(b_int) else None), int(scale)


def _input_spec(input_shape: tuple[int, int, int]) -> tuple[str, dict[str, Any]]:
    return ("input", {"shape": np.array(input_shape)})


def layers_to_netx(
    input_shape: tuple[int, int, int],
    layers: list[SpikingLayer],
    out: str | Path,
    calibration: NDArray[Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[ImportedLayer]:
    """Write ``layers`` as a netx HDF5 file at ``out`` in Loihi's fixed point.

    A layer already in fixed point (what :func:`netx_layers` of a netx file gives) is written
    as it is, so export followed by import reproduces the file's spikes exactly. Any other is
    quantised as the ANN-to-SNN converter does; with ``calibration`` spikes (N, T, C, H, W) its
    threshold is then corrected by the converter's rate gain (measured spikes of the fixed-point
    layer over those of the real-valued network, :func:`simulate`, ``GAIN_PASSES`` times) and
    each layer's agreement with the real-valued network is measured.
    """

    specs: list[tuple[str, dict[str, Any]]] = []
    first = layers[0]
    if first.kind != "input":
        specs.append(_input_spec(input_shape))
    reference = simulate(layers, calibration) if calibration is not None else None
    steps = calibration.shape[1] if calibration is not None else 0
    report = []
    for depth, layer in enumerate(layers):
        if layer.kind == "input" and layer.bias is not None:
            raise NirError(f"layer {layer.name}: netx's input layer has no bias")
        exact = fixed_point(layer)
        if exact is not None:
            weight, bias, vth = exact
            method = "exact"
        else:
            if layer.kind == "input":
                raise NirError(
                    f"layer {layer.name}: an input neuron with a threshold or decay outside "
                    "Loihi's fixed point cannot be rescaled (it has no weights to scale)"
                )
            weight, bias, vth = _quantise_layer(layer)
            method = "quantised"
        if layer.flatten_before:
            specs.append(("flatten", {"shape": np.array([int(np.prod(layer.in_shape)), 1, 1])}))
        spec = _spec(layer, weight, bias, vth)
        specs.append((layer.kind, spec))
        gains: list[float] = []
        latency = sum(1 for item in layers[: depth + 1] if item.kind != "input")
        if (
            reference is not None
            and calibration is not None
            and method == "quantised"
            and steps > latency
        ):
            expected = reference[depth].sum(axis=1) / (steps - latency)
            for _ in range(GAIN_PASSES):
                gain = rate_gain(specs, calibration, expected, steps - latency)
                if not gain > 0:
                    break  # silent on the calibration data: keep the quantiser's threshold
                gains.append(round(gain, 4))
                vth = int(min(VTH_MAX, max(1, round(vth * gain))))
                spec["neuron/vThMant"] = vth
        report.append(
            ImportedLayer(
                name=layer.name,
                kind=layer.kind,
                out_shape=tuple(int(d) for d in layer.out_shape),
                method=method,
                i_decay=int(spec["neuron/iDecay"]),
                v_decay=int(spec["neuron/vDecay"]),
                vth=int(vth),
                max_abs_weight=int(np.abs(weight).max(initial=0)) if weight is not None else 0,
                rate_gains=gains,
            )
        )
        if log:
            log(
                f"{layer.name}: {method}, iDecay {spec['neuron/iDecay']}, vDecay "
                f"{spec['neuron/vDecay']}, vThMant {vth}"
                + (f", rate gains {gains}" if gains else "")
            )
    out = Path(out)
    write_netx(out, specs)
    if reference is not None and calibration is not None:
        fixed = layer_spikes(out, calibration)
        for item, ref, got in zip(report, reference, fixed, strict=True):
            item.float_agreement = round(float((ref == got).mean()), 6)
    return report


def layer_spikes(snn_file: str | Path, spikes: NDArray[Any]) -> list[NDArray[Any]]:
    """Each layer's spikes of the netx file in the native runtime: uint8 (B, T, neurons)."""
    from hsnn_perception.core.snn.netx import read_netx
    from hsnn_perception.core.snn.runtime import SnnRuntime

    network = read_netx(snn_file)
    x = np.asarray(spikes)
    outs = []
    for k in range(1, len(network.layers) + 1):
        sub = replace(network, layers=network.layers[:k])
        outs.append(SnnRuntime(sub).run(x).reshape(x.shape[0], x.shape[1], -1))
    return outs
