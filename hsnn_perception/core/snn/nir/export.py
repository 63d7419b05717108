"""netx -> NIR: the runtime's Loihi CUBA layers as a NIR graph (``hsnn-nir export``); the
mapping and its approximations are in docs/nir.md."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.snn.nir.layers import (
    DECAY_UNITY,
    DEFAULT_DT,
    SOURCE,
    NirError,
    SpikingLayer,
    nir_module,
)


def _full(shape: tuple[int, ...], value: float) -> NDArray[Any]:
    return np.full(shape, value, dtype=np.float64)


def _neuron_shape(out_shape: tuple[int, int, int], kind: str) -> tuple[int, ...]:
    # A dense layer's neurons are a vector in NIR, (C, H, W) frames stay 3-D.
    return (out_shape[0],) if kind == "dense" and out_shape[1:] == (1, 1) else out_shape


def netx_layers(network: Any) -> list[SpikingLayer]:
    """The layers of a :class:`~hsnn_perception.core.snn.netx.NetxNetwork` as real-valued
    :class:`SpikingLayer` s, with the weights Lava ends up using (for dense layers netx's weight
    exponent applied: ``w_eff * 2**weight_exp``)."""
    from hsnn_perception.core.snn.runtime import netx_dense_weights

    layers = []
    for layer in network.layers:
        where = f"layer {layer.name}"
        if layer.delay is not None and np.any(layer.delay):
            raise NirError(
                f"{where}: synaptic delays cannot be exported (NIR's Delay node delays whole "
                "neurons, not single synapses, and no NIR importer reads it)"
            )
        weight = None
        if layer.kind == "dense":
            w_eff, exp = netx_dense_weights(layer.weight)
            weight = w_eff.astype(np.float64) * 2.0**exp
        elif layer.kind == "conv":
            weight = np.asarray(layer.weight, dtype=np.float64)
        bias = None
        if layer.bias is not None and np.any(layer.bias):
            # What Lava adds: the int16 bias_mant (wraps), in units of the voltage.
            bias = np.asarray(layer.bias).astype(np.int32).astype(np.int16).astype(np.float64)
        p = layer.neuron
        layers.append(
            SpikingLayer(
                name=layer.name,
                kind=layer.kind,
                in_shape=layer.in_shape,
                out_shape=layer.out_shape,
                i_decay=p.i_decay / DECAY_UNITY,
                v_decay=p.v_decay / DECAY_UNITY,
                threshold=float(p.vth_mant),
                weight=weight,
                bias=bias,
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
                groups=layer.groups,
                flatten_before=layer.flatten_before,
            )
        )
    return layers


def _neuron_node(layer: SpikingLayer, dt: float) -> tuple[Any, NDArray[Any] | None]:
    """The NIR neuron of ``layer`` and the bias that moves into its synapse node (or None).

    Euler-discretised NIR CubaLIF, ``I += dt/tau_syn (-I + w_in S)``, ``v += dt/tau_mem
    (v_leak - v + r I)``, is Loihi's step when ``dt/tau_syn = i_decay``, ``dt/tau_mem =
    v_decay``, ``w_in = tau_syn/dt``, ``r = tau_mem/dt`` (the convention of snnTorch's exporter)
    and ``v_leak = bias / v_decay``. A zero decay is an infinite time constant (and an infinite
    ``w_in`` / ``r``, the limit of the same convention).
    """
    nir = nir_module()

    shape = _neuron_shape(layer.out_shape, layer.kind)
    where = f"layer {layer.name}"
    bias = None if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
    to_synapse = None
    v_leak = np.zeros(shape)
    if bias is not None:
        if layer.i_decay == 1.0 and layer.kind != "input":
            # The current is only this step's input, so a constant in the synapse's bias adds
            # to v exactly as Loihi's bias does; every importer reads a synapse bias.
            to_synapse = bias
        elif layer.v_decay > 0:
            v_leak = (bias / layer.v_decay).reshape(shape)
        else:
            raise NirError(
                f"{where}: a bias on a neuron whose current decays over several steps and "
                "whose voltage does not leak has no NIR equivalent (it would need v_leak with "
                "an infinite membrane time constant)"
            )
    threshold = _full(shape, layer.threshold)
    if layer.i_decay == 1.0 and layer.v_decay == 0.0:
        # Non-leaky integrate-and-fire (what hsnn-convert makes): NIR's IF, v += r I per step.
        return nir.IF(r=_full(shape, 1.0), v_threshold=threshold, v_reset=np.zeros(shape)), (
            to_synapse
        )

    def constant(decay: float) -> tuple[float, float]:
        return (math.inf, math.inf) if decay == 0 else (dt / decay, 1.0 / decay)

    tau_syn, w_in = constant(layer.i_decay)
    tau_mem, r = constant(layer.v_decay)
    node = nir.CubaLIF(
        tau_syn=_full(shape, tau_syn),
        tau_mem=_full(shape, tau_mem),
        r=_full(shape, r),
        v_leak=v_leak,
        v_threshold=threshold,
        v_reset=np.zeros(shape),
        w_in=_full(shape, w_in),
    )
    return node, to_synapse


def layers_to_nir(
    layers: list[SpikingLayer],
    input_shape: tuple[int, int, int],
    dt: float = DEFAULT_DT,
    metadata: dict[str, Any] | None = None,
) -> Any:
    """A ``nir.NIRGraph``: Input -> (Flatten) -> Conv2d / Affine -> CubaLIF / IF -> ... -> Output.

    Node names are ``conv<i>`` / ``fc<i>`` / ``flatten<i>`` / ``lif<i>`` with ``i`` the netx
    layer index. ``metadata`` is merged into the graph's (``dt`` and the source are always set).
    """
    nir = nir_module()

    if not dt > 0 or not math.isfinite(dt):
        raise NirError(f"dt must be a positive number of seconds, got {dt}")
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array(input_shape))}
    edges: list[tuple[str, str]] = []
    prev = "input"
    for layer in layers:
        tag = layer.name.split(":")[0]
        neuron, synapse_bias = _neuron_node(layer, dt)
        if layer.kind == "conv":
            c_out = layer.out_shape[0]
            bias = np.zeros(c_out)
            if synapse_bias is not None:
                per_channel = synapse_bias.reshape(c_out, -1)
                if np.any(per_channel != per_channel[:, :1]):
                    raise NirError(
                        f"layer {layer.name}: a bias that differs between the neurons of one "
                        "channel cannot be a Conv2d bias (NIR's is per channel)"
                    )
                bias = per_channel[:, 0]
            syn = f"conv{tag}"
            nodes[syn] = nir.Conv2d(
                input_shape=tuple(int(d) for d in layer.in_shape[1:]),
                weight=np.asarray(layer.weight, dtype=np.float64),
                stride=tuple(int(s) for s in layer.stride),
                padding=tuple(int(p) for p in layer.padding),
                dilation=tuple(int(d) for d in layer.dilation),
                groups=int(layer.groups),
                bias=bias.astype(np.float64),
            )
        elif layer.kind == "dense":
            if layer.in_shape[1:] != (1, 1) or layer.flatten_before:
                flat = f"flatten{tag}"
                # start_dim 0: NIR shapes have no batch axis (the type check needs this).
                nodes[flat] = nir.Flatten(
                    input_type={"input": np.array(layer.in_shape)}, start_dim=0, end_dim=-1
                )
                edges.append((prev, flat))
                prev = flat
            syn = f"fc{tag}"
            n_out = layer.out_shape[0]
            bias = np.zeros(n_out) if synapse_bias is None else synapse_bias.reshape(n_out)
            nodes[syn] = nir.Affine(weight=np.asarray(layer.weight, np.float64), bias=bias)
        else:
            syn = None
        if syn is not None:
            edges.append((prev, syn))
            prev = syn
        lif = f"lif{tag}"
        nodes[lif] = neuron
        edges.append((prev, lif))
        prev = lif
    last = layers[-1]
    nodes["output"] = nir.Output(output_type=np.array(_neuron_shape(last.out_shape, last.kind)))
    edges.append((prev, "output"))
    meta = {
        **(metadata or {}),
        "source": SOURCE,
        "dt": float(dt),
        # Loihi delivers each synapse's current one step after the spike; NIR has no such
        # latency, so the same spikes come this many steps earlier in a NIR simulator.
        "loihi_latency_steps": sum(1 for layer in layers if layer.kind != "input"),
    }
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
    except (ValueError, AssertionError) as exc:
        raise NirError(f"the NIR graph does not type-check: {exc}") from exc


@dataclass
class ExportReport:
    """What an export wrote: one row per NIR node."""

    out: str
    dt: float
    latency_steps: int
    nodes: list[dict[str, Any]] = field(default_factory=list)


def export_snn(
    snn_file: str | Path,
    out: str | Path,
    dt: float = DEFAULT_DT,
    metadata: dict[str, Any] | None = None,
) -> ExportReport:
    """Write the netx network ``snn_file`` as the NIR file ``out`` (HDF5, ``nir.write``)."""
    nir = nir_module()

    from hsnn_perception.core.snn.netx import read_netx

    network = read_netx(snn_file)
    graph = layers_to_nir(netx_layers(network), network.input_shape, dt, metadata)
    out = Path(out)
    try:
        nir.write(str(out), graph)
    except OSError as exc:
        raise NirError(f"cannot write {out}: {exc}") from exc
    rows = []
    for name, node in graph.nodes.items():
        rows.append({"node": name, "type": type(node).__name__, **_describe(node)})
    return ExportReport(str(out), float(dt), int(graph.metadata["loihi_latency_steps"]), rows)


def _describe(node: Any) -> dict[str, Any]:
    def scalar(arr: Any) -> float:
        values = np.unique(np.asarray(arr, dtype=np.float64))
        return float(values[0]) if values.size == 1 else float("nan")

    kind = type(node).__name__
    if kind == "CubaLIF":
        return {
            "tau_syn": scalar(node.tau_syn),
            "tau_mem": scalar(node.tau_mem),
            "v_threshold": scalar(node.v_threshold),
        }
    if kind == "IF":
        return {"v_threshold": scalar(node.v_threshold)}
    if kind in ("Conv2d", "Affine"):
        return {"weight_shape": list(np.shape(node.weight))}
    return {}
