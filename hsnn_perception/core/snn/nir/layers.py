"""The layer both directions of the NIR mapping go through, Loihi's per-step CUBA equations with
real numbers (:class:`SpikingLayer`), the shared constants and a real-valued reference simulation
with Loihi's timing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

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


class NirError(ModelError, ValueError):
    """A graph cannot be exported to or imported from NIR (names the node or layer and why)."""


def nir_module() -> Any:
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
    weight: NDArray[Any] | None = None
    bias: NDArray[Any] | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    flatten_before: bool = False

    @property
    def num_neurons(self) -> int:
        return int(np.prod(self.out_shape))


def simulate(layers: list[SpikingLayer], spikes: NDArray[Any]) -> list[NDArray[Any]]:
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
