"""NIR export and import of the spiking layers.

NIR, the Neuromorphic Intermediate Representation (Pedersen et al., Nature Communications 15,
8122, 2024; the ``nir`` package), describes a network as a graph of continuous-time nodes
(``Conv2d``, ``Affine``, ``CubaLIF``, ``LIF``, ``IF``, ...). Libraries such as snnTorch, Norse,
sinabs and Rockpool read and write it. This module maps the Loihi CUBA layers that the runtime
runs (netx HDF5, see docs/snn_runtime.md) to NIR and back; docs/nir.md gives the mapping and every
approximation.

Both directions go through :class:`SpikingLayer`, Loihi's per-step equations with real numbers
(``u = (1 - i_decay) u + W s``, ``v = (1 - v_decay) v + u + bias``, spike when ``v > threshold``,
then ``v = 0``). A NIR time constant ``tau`` becomes the per-step fraction ``dt / tau`` for a
step of ``dt`` seconds; NIR itself has no time step, so ``dt`` is written into the graph's
metadata on export and must be known on import (the metadata, or the caller).

``nir``, ``h5py`` and ``torch`` are imported inside the functions that need them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hsnn_perception.core.errors import ModelError

# Seconds per step assumed for NIR time constants: snnTorch's NIR importer and exporter fix
# dt = 1e-4 s, so a graph written with it loads in snnTorch unchanged; Norse takes dt as an
# argument (from_nir(graph, dt=...)).
DEFAULT_DT = 1e-4
DECAY_UNITY = 4096  # Loihi's 12-bit decays: iDecay / 4096 of the current is lost per step
SOURCE = "hsnn_perception"
# Relative tolerance when deciding that a float read from a graph is an integer (or a decay a
# multiple of 1/4096): the products of NIR parameters (e.g. w_in * dt / tau_syn) are exact only
# up to float64 rounding.
INT_TOL = 1e-6
MAX_BIAS = (1 << 15) - 1  # netx passes the bias through Lava's int16 bias_mant

# Node types this importer can map, and why the others are refused.
_REFUSED = {
    "SumPool2d": "pooling cannot be deployed by netx (use a strided Conv2d instead)",
    "AvgPool2d": "pooling cannot be deployed by netx (use a strided Conv2d instead)",
    "Conv1d": "a 1-D convolution does not fit the bundle's (C, H, W) input frames",
    "Delay": "NIR Delay nodes are not imported (netx has dense synaptic delays, but no "
    "library writes them as NIR Delay nodes that this mapping could check)",
    "LI": "a non-spiking leaky integrator cannot be a Loihi spiking layer (a non-spiking "
    "read-out belongs in the ANN part: --ann)",
    "CubaLI": "a non-spiking leaky integrator cannot be a Loihi spiking layer (a non-spiking "
    "read-out belongs in the ANN part: --ann)",
    "I": "a non-spiking integrator cannot be a Loihi spiking layer (a non-spiking read-out "
    "belongs in the ANN part: --ann)",
    "Threshold": "a bare Threshold has no Loihi neuron (use IF, LIF or CubaLIF)",
    "Scale": "Scale nodes are not supported (fold the factor into the weights)",
    "NIRGraph": "a nested graph (how snnTorch and Norse write recurrent layers) is not "
    "supported: netx layers are feed-forward",
}


class NirError(ModelError, ValueError):
    """A graph cannot be exported to or imported from NIR (names the node or layer and why)."""


def _nir() -> Any:
    """The ``nir`` package, or NirError saying how to install it."""
    try:
        import nir
    except ImportError as exc:
        raise NirError(
            f"the nir package is not installed ({exc}): pip install -r requirements-nir.txt"
        ) from None
    return nir


@dataclass
class SpikingLayer:
    """One Loihi CUBA layer in real numbers, per step of ``dt``.

    ``kind``: ``input`` (a neuron fed straight by the input, no synapse), ``conv`` or ``dense``.
    ``weight``: conv ``(out, in/groups, kh, kw)``, dense ``(out, in)``, in units of the
    voltage; ``bias``: per output neuron in (C, H, W) order, added to ``v`` every step, or None.
    ``i_decay`` / ``v_decay``: fraction of the current / voltage lost per step (Loihi's
    ``iDecay / 4096``, ``vDecay / 4096``).
    """

    name: str
    kind: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    i_decay: float
    v_decay: float
    threshold: float
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    flatten_before: bool = False

    @property
    def num_neurons(self) -> int:
        return int(np.prod(self.out_shape))


# --------------------------------------------------------------------------------------------
# netx -> NIR
# --------------------------------------------------------------------------------------------


def _full(shape: tuple[int, ...], value: float) -> np.ndarray:
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


def _neuron_node(layer: SpikingLayer, dt: float) -> tuple[Any, np.ndarray | None]:
    """The NIR neuron of ``layer`` and the bias that moves into its synapse node (or None).

    Euler-discretised NIR CubaLIF, ``I += dt/tau_syn (-I + w_in S)``, ``v += dt/tau_mem
    (v_leak - v + r I)``, is Loihi's step when ``dt/tau_syn = i_decay``, ``dt/tau_mem =
    v_decay``, ``w_in = tau_syn/dt``, ``r = tau_mem/dt`` (the convention of snnTorch's exporter)
    and ``v_leak = bias / v_decay``. A zero decay is an infinite time constant (and an infinite
    ``w_in`` / ``r``, the limit of the same convention).
    """
    nir = _nir()

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
    nir = _nir()

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
    nir = _nir()

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


# --------------------------------------------------------------------------------------------
# NIR -> layers
# --------------------------------------------------------------------------------------------


def _kind(node: Any) -> str:
    return type(node).__name__


def _uniform(node_name: str, node: Any, attr: str) -> float:
    """One value for the whole layer (Lava's LIF takes one per layer), or NirError."""
    values = np.unique(np.asarray(getattr(node, attr), dtype=np.float64))
    if values.size != 1:
        raise NirError(
            f"node {node_name!r} ({_kind(node)}): {attr} differs between neurons "
            f"({values.size} values); Loihi's neuron takes one value per layer"
        )
    return float(values[0])


def _per_step(node_name: str, node: Any, tau_attr: str, gain_attr: str, dt: float) -> tuple:
    """``(decay, gain)`` of one Euler step of ``tau x' = -x + gain_term``: the fraction lost per
    step (``dt/tau``) and the factor on the input (``dt/tau * gain``); an infinite ``tau``
    with an infinite gain (the exporters' ``gain = tau/dt``) is (0, 1)."""
    tau = _uniform(node_name, node, tau_attr)
    gain = _uniform(node_name, node, gain_attr)
    where = f"node {node_name!r} ({_kind(node)})"
    if math.isinf(tau) and tau > 0:
        if math.isinf(gain) and gain > 0:
            return 0.0, 1.0
        raise NirError(f"{where}: {tau_attr} is infinite but {gain_attr} is {gain}, not infinite")
    if not tau > 0:
        raise NirError(f"{where}: {tau_attr} {tau} must be positive")
    decay = dt / tau
    if decay > 1 + INT_TOL:
        raise NirError(
            f"{where}: {tau_attr} {tau:g} s is shorter than one step of dt = {dt:g} s (Loihi "
            "cannot lose more than all of a state in one step; is dt right?)"
        )
    if not math.isfinite(gain):
        raise NirError(f"{where}: {gain_attr} {gain} must be finite with a finite {tau_attr}")
    return min(decay, 1.0), decay * gain


def _neuron(
    name: str, node: Any, dt: float
) -> tuple[float, float, float, float, np.ndarray | None]:
    """``(i_decay, v_decay, gain, threshold, v_bias)`` of a NIR neuron in Loihi's per-step
    form: the synapse's output is multiplied by ``gain`` on its way to ``v``; ``v_bias`` is
    added to ``v`` every step (per neuron) or None."""
    kind = _kind(node)
    where = f"node {name!r} ({kind})"
    if np.any(np.asarray(node.v_reset, dtype=np.float64) != 0):
        raise NirError(f"{where}: v_reset must be 0, since Loihi resets the voltage to zero")
    threshold = _uniform(name, node, "v_threshold")
    if not threshold >= 0 or not math.isfinite(threshold):
        raise NirError(f"{where}: v_threshold {threshold} must be finite and not negative")
    v_bias = None
    if kind == "IF":
        # v += r I per step: what Norse's IAF computes (snnTorch also reads r this way).
        return 1.0, 0.0, _uniform(name, node, "r"), threshold, None
    if kind == "LIF":
        v_decay, gain = _per_step(name, node, "tau", "r", dt)
        i_decay, syn_gain = 1.0, 1.0
    else:  # CubaLIF
        i_decay, syn_gain = _per_step(name, node, "tau_syn", "w_in", dt)
        v_decay, gain = _per_step(name, node, "tau_mem", "r", dt)
    leak = np.asarray(node.v_leak, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(leak)):
        raise NirError(f"{where}: v_leak must be finite")
    if np.any(leak) and v_decay > 0:
        v_bias = leak * v_decay
    return i_decay, v_decay, syn_gain * gain, threshold, v_bias


def _chain(graph: Any) -> tuple[str, list[str]]:
    """The input node's name and the nodes after it, in order; NirError for anything that is
    not a single chain from one Input to one Output."""
    nodes = graph.nodes
    for name, node in nodes.items():
        if _kind(node) == "NIRGraph":
            raise NirError(f"node {name!r} (NIRGraph): {_REFUSED['NIRGraph']}")
    succ: dict[str, list[str]] = {name: [] for name in nodes}
    pred: dict[str, list[str]] = {name: [] for name in nodes}
    for a, b in graph.edges:
        if a not in nodes or b not in nodes:
            raise NirError(f"edge ({a!r}, {b!r}) names a node the graph does not have")
        if b not in succ[a]:
            succ[a].append(b)
            pred[b].append(a)
    for a, b in graph.edges:
        if _reaches(succ, b, a):
            raise NirError(
                f"node {a!r} ({_kind(nodes[a])}) and {b!r} ({_kind(nodes[b])}) form a cycle: "
                "recurrent connections are not supported (netx layers are feed-forward)"
            )
    inputs = [n for n, node in nodes.items() if _kind(node) == "Input"]
    if len(inputs) != 1:
        raise NirError(f"the graph needs exactly one Input node, it has {len(inputs)}")
    order: list[str] = []
    seen = {inputs[0]}
    current = inputs[0]
    while succ[current]:
        if len(succ[current]) > 1:
            raise NirError(
                f"node {current!r} ({_kind(nodes[current])}) feeds {len(succ[current])} nodes "
                f"({', '.join(succ[current])}): only a chain of layers (no branches, skip or "
                "recurrent connections) maps to netx"
            )
        nxt = succ[current][0]
        if nxt in seen:
            raise NirError(
                f"node {nxt!r} ({_kind(nodes[nxt])}) is reached twice: recurrent connections "
                "are not supported (netx layers are feed-forward)"
            )
        if len(pred[nxt]) > 1:
            raise NirError(
                f"node {nxt!r} ({_kind(nodes[nxt])}) has {len(pred[nxt])} inputs "
                f"({', '.join(pred[nxt])}): only a chain of layers maps to netx"
            )
        seen.add(nxt)
        order.append(nxt)
        current = nxt
    if not order or _kind(nodes[order[-1]]) != "Output":
        raise NirError(f"the chain from the input ends at {current!r}, not at an Output node")
    stray = sorted(set(nodes) - seen)
    if stray:
        raise NirError(f"nodes not on the path from the input to the output: {', '.join(stray)}")
    return inputs[0], order[:-1]


def _reaches(succ: dict[str, list[str]], start: str, goal: str) -> bool:
    stack, seen = [start], set()
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(succ[node])
    return False


def _input_shape(name: str, node: Any) -> tuple[int, int, int]:
    shape = node.input_type.get("input") if isinstance(node.input_type, dict) else None
    dims = [int(d) for d in np.asarray(shape).reshape(-1)] if shape is not None else []
    if len(dims) == 1:
        return (dims[0], 1, 1)
    if len(dims) == 3 and min(dims) > 0:
        return (dims[0], dims[1], dims[2])
    raise NirError(
        f"node {name!r} (Input): shape {dims} is neither [N] nor [C, H, W] (a batch axis "
        "must not be part of NIR shapes)"
    )


def _conv_padding(name: str, node: Any, kernel: tuple[int, int]) -> tuple[int, int]:
    pad = node.padding
    if isinstance(pad, bytes):
        pad = pad.decode()
    if isinstance(pad, str):
        if pad == "valid":
            return (0, 0)
        stride = tuple(int(s) for s in np.broadcast_to(np.asarray(node.stride), (2,)))
        if pad == "same" and stride == (1, 1) and all(k % 2 == 1 for k in kernel):
            dil = np.broadcast_to(np.asarray(node.dilation), (2,))
            return (int(dil[0]) * (kernel[0] // 2), int(dil[1]) * (kernel[1] // 2))
        raise NirError(
            f"node {name!r} (Conv2d): padding {pad!r} with stride {stride} and kernel {kernel} "
            "has no symmetric integer equivalent"
        )
    values = np.broadcast_to(np.asarray(pad, dtype=np.int64).reshape(-1), (2,))
    return (int(values[0]), int(values[1]))


def _pair(value: Any) -> tuple[int, int]:
    values = np.broadcast_to(np.asarray(value, dtype=np.int64).reshape(-1), (2,))
    return (int(values[0]), int(values[1]))


def nir_layers(graph: Any, dt: float) -> tuple[tuple[int, int, int], list[SpikingLayer]]:
    """The input shape and the :class:`SpikingLayer` s of ``graph`` (a ``nir.NIRGraph``),
    for a step of ``dt`` seconds. NirError names the first node that cannot be mapped."""
    if not dt > 0 or not math.isfinite(dt):
        raise NirError(f"dt must be a positive number of seconds, got {dt}")
    input_name, order = _chain(graph)
    nodes = graph.nodes
    for name in order:  # an unsupported node is the first thing to say
        kind = _kind(nodes[name])
        if kind in _REFUSED:
            raise NirError(f"node {name!r} ({kind}): {_REFUSED[kind]}")
    shape = _input_shape(input_name, nodes[input_name])
    input_shape = shape
    layers: list[SpikingLayer] = []
    synapse: dict[str, Any] | None = None  # the weighted node waiting for its neuron
    flatten = False
    prev_kind = "Input"
    for name in order:
        node = nodes[name]
        kind = _kind(node)
        where = f"node {name!r} ({kind})"
        if kind == "Flatten":
            if synapse is not None:
                raise NirError(f"{where}: a Flatten between a synapse and its neuron")
            flatten = True
            shape = (int(np.prod(shape)), 1, 1)
        elif kind in ("Conv2d", "Affine", "Linear"):
            if synapse is not None:
                raise NirError(
                    f"{where}: follows {synapse['name']!r} ({synapse['kind_nir']}) without a "
                    "neuron between them; every synapse needs its spiking neuron"
                )
            synapse = _synapse(name, node, shape, flatten)
            flatten = False
        elif kind in ("CubaLIF", "LIF", "IF"):
            layers.append(_layer(name, node, synapse, shape, prev_kind, dt, bool(layers)))
            shape = layers[-1].out_shape
            synapse = None
        else:
            raise NirError(f"{where}: node type {kind} is not supported")
        prev_kind = kind
    if synapse is not None:
        raise NirError(
            f"node {synapse['name']!r} ({synapse['kind_nir']}) feeds the output without a "
            "spiking neuron: the SNN part must end in spiking neurons (a non-spiking read-out "
            "belongs in the ANN part, --ann)"
        )
    if flatten:
        raise NirError("the graph ends with a Flatten: the SNN output must be a neuron layer")
    if not layers:
        raise NirError("the graph has no spiking neuron")
    return input_shape, layers


def _synapse(name: str, node: Any, shape: tuple[int, int, int], flatten: bool) -> dict[str, Any]:
    kind = _kind(node)
    where = f"node {name!r} ({kind})"
    weight = np.asarray(node.weight, dtype=np.float64)
    if not np.all(np.isfinite(weight)):
        raise NirError(f"{where}: weights must be finite")
    bias = None
    if kind != "Linear" and getattr(node, "bias", None) is not None:
        bias = np.asarray(node.bias, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(bias)):
            raise NirError(f"{where}: bias must be finite")
        if not np.any(bias):
            bias = None
    if kind == "Conv2d":
        if flatten:
            raise NirError(f"{where}: a convolution cannot follow a Flatten")
        if weight.ndim != 4:
            raise NirError(f"{where}: weight must be (out, in, kh, kw), got {list(weight.shape)}")
        groups = int(node.groups)
        c_in, h_in, w_in = shape
        if groups < 1 or weight.shape[1] * groups != c_in or weight.shape[0] % groups:
            raise NirError(
                f"{where}: weight {list(weight.shape)} with groups={groups} does not take the "
                f"{c_in} channels of the previous layer (shape {list(shape)})"
            )
        kernel = (int(weight.shape[2]), int(weight.shape[3]))
        stride, dilation = _pair(node.stride), _pair(node.dilation)
        padding = _conv_padding(name, node, kernel)
        if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
            raise NirError(
                f"{where}: invalid stride {stride} / padding {padding} / dilation {dilation}"
            )
        h_out = (h_in + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
        w_out = (w_in + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
        if h_out < 1 or w_out < 1:
            raise NirError(f"{where}: kernel {kernel} does not fit the input {list(shape)}")
        out_shape = (int(weight.shape[0]), h_out, w_out)
        if bias is not None:
            if bias.size != out_shape[0]:
                raise NirError(f"{where}: bias of {bias.size} values for {out_shape[0]} channels")
            bias = np.repeat(bias, h_out * w_out)
        return {
            "name": name,
            "kind_nir": kind,
            "kind": "conv",
            "weight": weight,
            "bias": bias,
            "in_shape": shape,
            "out_shape": out_shape,
            "stride": stride,
            "padding": padding,
            "dilation": dilation,
            "groups": groups,
            "flatten_before": False,
        }
    if weight.ndim != 2:
        raise NirError(f"{where}: weight must be (out, in), got {list(weight.shape)}")
    n_in = int(np.prod(shape))
    if weight.shape[1] != n_in:
        raise NirError(
            f"{where}: weight takes {weight.shape[1]} inputs but the previous layer gives "
            f"{n_in} (shape {list(shape)})"
        )
    if shape[1:] != (1, 1) and not flatten:
        raise NirError(f"{where}: a dense layer after a (C, H, W) layer needs a Flatten first")
    if bias is not None and bias.size != weight.shape[0]:
        raise NirError(f"{where}: bias of {bias.size} values for {weight.shape[0]} outputs")
    return {
        "name": name,
        "kind_nir": kind,
        "kind": "dense",
        "weight": weight,
        "bias": bias,
        "in_shape": shape,
        "out_shape": (int(weight.shape[0]), 1, 1),
        "flatten_before": flatten,
    }


def _layer(
    name: str,
    node: Any,
    synapse: dict[str, Any] | None,
    shape: tuple[int, int, int],
    prev_kind: str,
    dt: float,
    has_layers: bool,
) -> SpikingLayer:
    kind = _kind(node)
    where = f"node {name!r} ({kind})"
    i_decay, v_decay, gain, threshold, v_bias = _neuron(name, node, dt)
    if synapse is None:
        if has_layers or prev_kind != "Input":
            raise NirError(
                f"{where}: follows a {prev_kind} without a synapse between them; only the first "
                "neuron may take the input directly"
            )
        out_shape = shape
        n = int(np.prod(shape))
        neurons = int(np.prod(np.shape(node.v_threshold)))
        if neurons not in (1, n):
            raise NirError(f"{where}: {neurons} neurons for an input of {n}")
        if gain != 1.0 and not math.isclose(gain, 1.0, rel_tol=INT_TOL):
            raise NirError(
                f"{where}: an input neuron scales its input by {gain:g}; Loihi's input layer "
                "passes the spikes unscaled"
            )
        bias = None if v_bias is None else np.broadcast_to(v_bias, (n,)).copy()
        return SpikingLayer(name, "input", shape, out_shape, i_decay, v_decay, threshold, bias=bias)
    out_shape = synapse["out_shape"]
    n = int(np.prod(out_shape))
    neurons = int(np.prod(np.shape(node.v_threshold)))
    if neurons not in (1, n):
        raise NirError(
            f"{where}: {neurons} neurons after {synapse['name']!r}, which has {n} outputs"
        )
    bias = None
    if synapse["bias"] is not None:
        if not math.isclose(i_decay, 1.0, rel_tol=INT_TOL):
            raise NirError(
                f"node {synapse['name']!r} ({synapse['kind_nir']}): its bias feeds a synaptic "
                f"current that decays over several steps (neuron {name!r}); Loihi's bias adds "
                "to the voltage only (train without a synapse bias, or with LIF neurons)"
            )
        bias = synapse["bias"] * gain
    if v_bias is not None:
        extra = np.broadcast_to(v_bias, (n,))
        bias = extra.copy() if bias is None else bias + extra
    return SpikingLayer(
        name=f"{synapse['name']}+{name}",
        kind=synapse["kind"],
        in_shape=synapse["in_shape"],
        out_shape=out_shape,
        i_decay=i_decay,
        v_decay=v_decay,
        threshold=threshold,
        weight=synapse["weight"] * gain,
        bias=bias,
        stride=synapse.get("stride", (1, 1)),
        padding=synapse.get("padding", (0, 0)),
        dilation=synapse.get("dilation", (1, 1)),
        groups=synapse.get("groups", 1),
        flatten_before=synapse["flatten_before"],
    )


def read_graph(path: str | Path) -> Any:
    """``nir.read(path)`` with its failures as NirError."""
    nir = _nir()

    path = Path(path)
    if not path.is_file():
        raise NirError(f"{path}: no such file")
    try:
        return nir.read(str(path))
    except Exception as exc:  # nir raises whatever h5py and its own parser raise
        raise NirError(f"{path}: not a readable NIR graph ({type(exc).__name__}: {exc})") from exc


def graph_dt(graph: Any) -> float | None:
    """The ``dt`` (seconds per step) a graph's metadata names, or None."""
    value = (getattr(graph, "metadata", None) or {}).get("dt")
    try:
        dt = float(np.asarray(value).reshape(-1)[0]) if value is not None else None
    except (TypeError, ValueError, IndexError):
        return None
    return dt if dt is not None and dt > 0 and math.isfinite(dt) else None


# --------------------------------------------------------------------------------------------
# Real-valued reference simulation (Loihi timing)
# --------------------------------------------------------------------------------------------


def simulate(layers: list[SpikingLayer], spikes: np.ndarray) -> list[np.ndarray]:
    """Run ``layers`` in float64 on binary ``spikes`` (B, T, C, H, W) with Loihi's timing (a
    synapse delivers one step after the spike) but no fixed point: the network a NIR graph
    describes. Returns each layer's spikes, uint8 (B, T, neurons)."""
    import torch

    x = np.asarray(spikes)
    b, t = x.shape[:2]
    s = x.astype(np.float64)
    outs = []
    for layer in layers:
        if layer.kind == "input":
            a_in = s.reshape(b, t, -1)
        else:
            frames = torch.from_numpy(np.ascontiguousarray(s.reshape(b * t, *layer.in_shape)))
            w = torch.from_numpy(np.asarray(layer.weight, dtype=np.float64))
            if layer.kind == "conv":
                y = torch.nn.functional.conv2d(
                    frames, w, None, layer.stride, layer.padding, layer.dilation, layer.groups
                )
            else:
                y = frames.reshape(b * t, -1) @ w.T
            cur = y.numpy().reshape(b, t, -1)
            a_in = np.zeros_like(cur)
            a_in[:, 1:] = cur[:, :-1]  # one step of synaptic latency
        n = layer.num_neurons
        u = np.zeros((b, n))
        v = np.zeros((b, n))
        bias = 0.0 if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
        out = np.zeros((b, t, n), np.uint8)
        for step in range(t):
            u = (1.0 - layer.i_decay) * u + a_in[:, step]
            v = (1.0 - layer.v_decay) * v + u + bias
            fired = v > layer.threshold
            v[fired] = 0.0
            out[:, step] = fired
        outs.append(out)
        s = out.reshape(b, t, *layer.out_shape).astype(np.float64)
    return outs


# --------------------------------------------------------------------------------------------
# layers -> Loihi fixed point (netx)
# --------------------------------------------------------------------------------------------


@dataclass
class ImportedLayer:
    """How one layer was brought to Loihi's fixed point (for the manifest and the report)."""

    name: str
    kind: str
    out_shape: tuple[int, int, int]
    method: str  # "exact" (already integers) or "quantised"
    i_decay: int
    v_decay: int
    vth: int
    max_abs_weight: int
    rate_gains: list[float] = field(default_factory=list)
    float_agreement: float | None = None  # fraction of (neuron, step) equal to the float model


def _is_int(values: np.ndarray) -> bool:
    values = np.asarray(values, dtype=np.float64)
    return bool(np.all(np.abs(values - np.round(values)) <= INT_TOL * np.maximum(1, values)))


def _decay_int(layer: SpikingLayer, attr: str) -> tuple[int, bool]:
    scaled = getattr(layer, attr) * DECAY_UNITY
    return int(round(scaled)), abs(scaled - round(scaled)) <= INT_TOL * DECAY_UNITY


def fixed_point(layer: SpikingLayer) -> tuple[np.ndarray, np.ndarray | None, int] | None:
    """``(weights, bias, vThMant)`` as integers if ``layer`` already is in Loihi's fixed point
    (integer weights within 8 bits, integer bias and threshold, decays that are multiples of
    1/4096), else None."""
    from hsnn_perception.training.convert import VTH_MAX, WEIGHT_MAX

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
    layer: SpikingLayer, weight: np.ndarray | None, bias: np.ndarray | None, vth: int
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


def _quantise_layer(layer: SpikingLayer) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The ANN-to-SNN converter's quantisation (hsnn_perception.training.convert._quantise):
    weights normalised by the threshold and scaled by ``vThMant = floor(254 / max|w|)`` so the
    largest becomes 254, rounded to even integers in [-254, 254], bias rounded. Where the
    converter refuses a layer whose worst-case current (all inputs spiking) would overflow
    Loihi's 24-bit current, the scale is lowered until it fits instead: wide dense layers of
    trained networks hit that bound with small weights."""
    from hsnn_perception.training.convert import CURRENT_MAX, VTH_MAX, WEIGHT_MAX, _even

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
        w_int = _even(w * scale)
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
    calibration: np.ndarray | None = None,
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
    from hsnn_perception.training.convert import GAIN_PASSES, VTH_MAX, _rate_gain, _write_netx

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
        if reference is not None and method == "quantised" and steps > latency:
            expected = reference[depth].sum(axis=1) / (steps - latency)
            for _ in range(GAIN_PASSES):
                gain = _rate_gain(specs, calibration, expected, steps - latency)
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
    _write_netx(out, specs)
    if reference is not None:
        fixed = layer_spikes(out, calibration)
        for item, ref, got in zip(report, reference, fixed, strict=True):
            item.float_agreement = round(float((ref == got).mean()), 6)
    return report


def layer_spikes(snn_file: str | Path, spikes: np.ndarray) -> list[np.ndarray]:
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


# --------------------------------------------------------------------------------------------
# NIR file -> bundle
# --------------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    source: str
    dt: float
    dt_from: str  # "metadata" | "argument"
    layers: list[ImportedLayer]
    calibration_windows: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _onnx_io(path: Path) -> tuple[str, str, list[Any]]:
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises protobuf's DecodeError and others
        raise NirError(f"--ann {path}: not a readable ONNX model ({exc})") from exc
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1 or not graph.output:
        raise NirError(f"--ann {path}: needs exactly one input and an output")
    dims = [d.dim_value or d.dim_param for d in inputs[0].type.tensor_type.shape.dim]
    return inputs[0].name, graph.output[0].name, dims


def import_graph(
    nir_file: str | Path,
    out: str | Path,
    template: Any,
    ann: str | Path | None = None,
    dt: float | None = None,
    name: str | None = None,
    labels: tuple[str, ...] | None = None,
    calibration: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Any, ImportReport]:
    """Import the NIR graph ``nir_file`` as a bundle in ``out`` (netx ``snn.net``, the ONNX
    ``ann`` copied as ``ann.onnx`` when given, ``manifest.json``).

    ``template`` (a ModelBundle) gives the sensor, binning, window, accumulator interval and
    (unless ``labels``) the class names. ``dt``: seconds per step, used when the graph's metadata
    has none. Without ``ann`` the class is the output neuron with the most spikes, so the last
    layer must have one neuron per label.
    """
    import shutil

    from hsnn_perception.core.hybrid.bundle import ModelBundle

    graph = read_graph(nir_file)
    meta_dt = graph_dt(graph)
    if meta_dt is not None:
        step, dt_from = meta_dt, "metadata"
    elif dt is not None:
        step, dt_from = float(dt), "argument"
    else:
        step, dt_from = DEFAULT_DT, "default"
    input_shape, layers = nir_layers(graph, step)
    c, h, w = input_shape
    if c != template.channels:
        raise NirError(
            f"the graph's input has {c} channels (shape {list(input_shape)}) but the template "
            f"bins events into {template.channels} (C, H, W): give it an Input of shape "
            f"[{template.channels}, H, W] (a Flatten before a dense layer, if it has one)"
        )
    if template.sensor_height % h or template.sensor_width % w:
        raise NirError(
            f"the graph's input {h}x{w} does not divide the template's sensor "
            f"{template.sensor_height}x{template.sensor_width}"
        )
    labels = tuple(labels) if labels else template.labels
    out_shape = layers[-1].out_shape
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ann_file = None
    ann_names = ("frames", "logits")
    frames = template.timesteps // template.interval
    if ann is not None:
        ann = Path(ann)
        in_name, out_name, dims = _onnx_io(ann)
        want = [frames * out_shape[0], out_shape[1], out_shape[2]]
        if len(dims) != 4 or [d if isinstance(d, int) else None for d in dims[1:]] != want:
            raise NirError(
                f"--ann {ann}: its input {dims} does not take the accumulated SNN output "
                f"[N, {want[0]}, {want[1]}, {want[2]}] ({frames} frames of {list(out_shape)})"
            )
        ann_file = out_dir / "ann.onnx"
        if ann.resolve() != ann_file.resolve():
            shutil.copyfile(ann, ann_file)
        ann_names = (in_name, out_name)
    elif int(np.prod(out_shape)) != len(labels):
        raise NirError(
            f"without --ann the class is the output neuron with the most spikes, but the last "
            f"layer has {int(np.prod(out_shape))} neurons for {len(labels)} labels (give --ann "
            "or --labels)"
        )
    if calibration is not None and tuple(calibration.shape[2:]) != tuple(input_shape):
        if log:
            log(
                f"calibration windows {list(calibration.shape[2:])} do not fit the graph's "
                f"input {list(input_shape)}: no rate calibration"
            )
        calibration = None
    snn_file = out_dir / "snn.net"
    report_layers = layers_to_netx(input_shape, layers, snn_file, calibration, log)
    report = ImportReport(
        str(nir_file),
        step,
        dt_from,
        report_layers,
        0 if calibration is None else int(calibration.shape[0]),
    )
    stale = out_dir / "ann_int8.onnx"
    if stale.exists():
        stale.unlink()  # a previous bundle's part would contradict the manifest
    bundle = ModelBundle(
        path=out_dir,
        name=name or Path(nir_file).stem,
        sensor_height=template.sensor_height,
        sensor_width=template.sensor_width,
        channels=c,
        height=h,
        width=w,
        bin_us=template.bin_us,
        timesteps=template.timesteps,
        interval=template.interval,
        labels=labels,
        snn_file=snn_file,
        snn_output_shape=out_shape,
        ann_file=ann_file,
        ann_input_name=ann_names[0],
        ann_output_name=ann_names[1],
        recipe={
            "nir_import": {
                **report.to_dict(),
                "metadata": {k: _plain(v) for k, v in (graph.metadata or {}).items()},
                "template": str(template.path),
            }
        },
        metrics={},
    )
    bundle.validate()
    bundle.save_manifest()
    return ModelBundle.load(out_dir), report


def _plain(value: Any) -> Any:
    """A metadata value as JSON: bytes decoded, numpy scalars and arrays as Python values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return _plain(value.item()) if value.size == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
