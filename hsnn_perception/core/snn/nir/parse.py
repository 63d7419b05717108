"""NIR -> layers: a graph written by another library read into :class:`SpikingLayer` objects,
refusing (with the node and the reason) what Loihi cannot run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.snn.nir.layers import INT_TOL, NirError, SpikingLayer, nir_module

# Node types this importer can map, and why the others are refused.
REFUSED_NODES = {
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


def _per_step(
    node_name: str, node: Any, tau_attr: str, gain_attr: str, dt: float
) -> tuple[float, float]:
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
) -> tuple[float, float, float, float, NDArray[Any] | None]:
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


def node_chain(graph: Any) -> tuple[str, list[str]]:
    """The input node's name and the nodes after it, in order; NirError for anything that is
    not a single chain from one Input to one Output."""
    nodes = graph.nodes
    for name, node in nodes.items():
        if _kind(node) == "NIRGraph":
            raise NirError(f"node {name!r} (NIRGraph): {REFUSED_NODES['NIRGraph']}")
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
    input_name, order = node_chain(graph)
    nodes = graph.nodes
    for name in order:  # an unsupported node is the first thing to say
        kind = _kind(nodes[name])
        if kind in REFUSED_NODES:
            raise NirError(f"node {name!r} ({kind}): {REFUSED_NODES[kind]}")
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
    nir = nir_module()

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
