"""The project's SNN runtime: runs a netx HDF5 network with Loihi's fixed-point arithmetic
(``loihi.py``), bit for bit as Lava's ``fixed_pt`` process models (lava-nc 0.10) do, but fast.

Every conv/dense synapse delivers its current one timestep after the input spike (Lava's
``a_buff``), dense delays ``d`` add ``d`` more steps. An input layer's neuron has no synapse and
no latency. So output step ``t`` depends on input steps ``<= t - L`` for ``L`` synaptic layers,
exactly as in Lava and as in slayer with its default ``delay_shift=True``.

Two ways to run a window, bit-identical (tested against each other, slayer and Lava):

* ``synapses="events"`` / ``"auto"`` (numba): event-driven (``event_driven.py``): each input
  spike adds its weights to the neurons it reaches, so the synaptic cost follows the input
  activity (DVS input is 0.5-5 % active per 10 ms bin); ``"auto"`` hands a step whose input is
  busier than ``dense_above`` to the dense conv/matmul, per layer and per step.
* ``synapses="dense"``: each synapse is one conv/matmul over all B*T frames (``synapse.py``),
  then each layer's neurons run the whole window in one compiled pass (numba) or per step
  (numpy, ``engine="numpy"``).

``compute`` picks the dense conv/matmul library: numpy unless ``"torch"`` is asked for, so the
default runtime never imports torch (~190 MiB of a node's memory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# The public API lives in api.py (shared with the Lava backend); it is re-exported here because
# callers import it from the runtime.
from hsnn_perception.core.snn.api import (
    COUNT_FIELDS,
    OpCounts,
    SnnBackend,
    SnnConfigError,
    SnnInputError,
    check_spikes,
    load_snn,
)
from hsnn_perception.core.snn.loihi import Lif, netx_dense_weights
from hsnn_perception.core.snn.netx import (
    MAX_NETWORK_NEURONS,
    MAX_NETWORK_WEIGHTS,
    NetxFormatError,
    NetxNetwork,
    read_netx,
)
from hsnn_perception.core.snn.ops import count_ops, synaptic_ops
from hsnn_perception.core.snn.synapse import DenseSynapse

__all__ = [
    "COUNT_FIELDS",
    "DENSE_ABOVE",
    "OpCounts",
    "SnnBackend",
    "SnnConfigError",
    "SnnInputError",
    "SnnRuntime",
    "check_spikes",
    "count_ops",
    "load_snn",
    "netx_dense_weights",
    "numba_available",
    "open_native",
]

# Elements (time x batch x neurons) handled at once by the dense ``run``; bounds its memory.
_CHUNK_ELEMENTS = 1 << 24
# synapses="auto": a step whose input has more than this fraction of its neurons spiking takes
# the dense conv/matmul (per compute library): about where the event-driven kernel and the dense
# one cost the same on a 2x128x128 -> 16-channel conv (bench/snn_sparse.py --calibrate).
DENSE_ABOVE = {"numpy": 0.5, "torch": 0.2}


def numba_available() -> bool:
    """Whether the compiled kernels can be used (numba importable)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _pick_compute(compute: str) -> str:
    if compute not in ("auto", "torch", "numpy"):
        raise SnnConfigError(f"compute must be 'auto', 'torch' or 'numpy', not {compute!r}")
    if compute == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise SnnConfigError("compute='torch' but torch is not installed") from None
        return "torch"
    return "numpy"  # "auto": numpy, so that a runtime never imports torch unless asked to


def _pick_engine(engine: str) -> str:
    if engine not in ("auto", "numba", "numpy"):
        raise SnnConfigError(f"engine must be 'auto', 'numba' or 'numpy', not {engine!r}")
    if engine == "numpy":
        return "numpy"
    if numba_available():
        return "numba"
    if engine == "numba":
        raise SnnConfigError("engine='numba' but numba is not installed")
    return "numpy"


def _pick_synapses(synapses: str, engine: str) -> str:
    if synapses not in ("auto", "events", "dense"):
        raise SnnConfigError(f"synapses must be 'auto', 'events' or 'dense', not {synapses!r}")
    if synapses == "events" and engine != "numba":
        raise SnnConfigError("synapses='events' needs the numba engine (numba installed)")
    if synapses == "auto":
        return "auto" if engine == "numba" else "dense"
    return synapses


def check_network_size(network: NetxNetwork) -> None:
    """Refuse a network whose runtime tables would be too large, before building any of them.

    ``read_netx`` bounds what a file declares; this bounds what the runtime derives from it: a
    dense layer with delays gets one weight matrix per distinct delay (up to 63 copies), and a
    network built in code has not been through ``read_netx`` at all.
    """
    neurons = weights = 0
    for layer in network.layers:
        neurons += layer.num_neurons
        if layer.weight is None:
            continue
        copies = 1 if layer.delay is None else max(1, len(np.unique(layer.delay)))
        weights += copies * int(layer.weight.size)
        if weights > MAX_NETWORK_WEIGHTS:
            raise NetxFormatError(
                f"{network.path}: layer {layer.name}: the runtime would hold {weights} weights "
                f"({copies} delay groups here), more than the limit of {MAX_NETWORK_WEIGHTS}"
            )
    if neurons > MAX_NETWORK_NEURONS:
        raise NetxFormatError(
            f"{network.path}: {neurons} neurons, more than the limit of {MAX_NETWORK_NEURONS}"
        )


class SnnRuntime:
    """Loihi-exact execution of a netx network, batched over samples (``run``) or one window of
    one sample (``run_window``).

    Shapes are (C, H, W) like slayer/torch; dense outputs are (N, 1, 1).

    ``compute``: the dense conv/matmul library (``"auto"``/``"numpy"``, or ``"torch"``);
    ``engine``: the neuron update (``"auto"``: numba when installed, else numpy per step);
    ``synapses``: ``"auto"`` (event-driven, dense conv/matmul for steps whose input is busier
    than ``dense_above``, default ``DENSE_ABOVE[compute]``), ``"events"`` (event-driven for every
    step) or ``"dense"`` (whole-window conv/matmul). ``"auto"`` falls back to ``"dense"``
    without numba. All combinations give identical results.
    """

    def __init__(
        self,
        network: NetxNetwork,
        compute: str = "auto",
        engine: str = "auto",
        synapses: str = "auto",
        dense_above: float | None = None,
    ) -> None:
        check_network_size(network)
        self.network = network
        self.compute = _pick_compute(compute)
        self.engine = _pick_engine(engine)
        self.synapses = _pick_synapses(synapses, self.engine)
        if dense_above is None:
            dense_above = DENSE_ABOVE[self.compute] if self.synapses == "auto" else 1.0
        if not 0.0 <= dense_above <= 1.0:
            raise SnnConfigError(f"dense_above must be within [0, 1], not {dense_above!r}")
        self.input_shape: tuple[int, int, int] = network.input_shape
        self.output_shape: tuple[int, int, int] = network.output_shape
        self.layer_names = [layer.name for layer in network.layers]
        self._syn = [
            None if layer.kind == "input" else DenseSynapse(layer, self.compute)
            for layer in network.layers
        ]
        self._lif = [Lif(layer) for layer in network.layers]
        self._events: Any = None
        if self.synapses != "dense":
            from hsnn_perception.core.snn.event_driven import EventNetwork

            events = EventNetwork(network.layers, self._syn, self._lif, dense_above)
            if events.fits:
                self._events = events
            else:  # a dense layer with many long delays: its accumulator ring would not pay
                self.synapses = "dense"
        self.dense_above = dense_above if self._events is not None else 1.0
        self.backend_name = f"native ({self.compute})"
        if self._events is not None:
            dense = f", {self.compute} dense steps" if self.synapses == "auto" else ""
            self.backend_name = f"native (numba events{dense})"
        elif self.engine == "numba":
            self.backend_name = f"native ({self.compute}+numba)"

    # -- context manager / API symmetry with the Lava backend --------------------------------
    def close(self) -> None:
        """Nothing to release (kept for the same interface as LavaSnn)."""

    def __enter__(self) -> SnnRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def latency(self) -> int:
        """Timesteps between an input spike and the earliest output it can cause."""
        return self.network.num_synaptic_layers

    # -- batched ----------------------------------------------------------------------------------
    def run(self, inputs: npt.ArrayLike) -> npt.NDArray[np.uint8]:
        """``inputs`` (B, T, C, H, W) binary -> output spikes (B, T, *output_shape) uint8.

        Each sample starts from the reset state.
        """
        return self.run_with_counts(inputs)[0]

    def run_with_counts(
        self, inputs: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """Like ``run`` and also the counts, int64 (B, T, layers, 3) in ``COUNT_FIELDS`` order."""
        events = self._events is not None
        # the event-driven kernels check uint8 values as they read them (one pass less)
        x = check_spikes(self.input_shape, inputs, 2, "run input", uint8_values=not events)
        b, t = x.shape[:2]
        if self._events is not None:
            if b == 1:  # one window (the node's): no copy into a batch array
                out, count = self._events.run_sample(x[0])
                return out[None], count[None]
            spikes = np.empty((b, t, *self.output_shape), np.uint8)
            counts = np.empty((b, t, len(self._lif), 3), np.int64)
            for i in range(b):
                spikes[i], counts[i] = self._events.run_sample(x[i])
            return spikes, counts
        widest = max(int(np.prod(layer.out_shape)) for layer in self.network.layers)
        widest = max(widest, int(np.prod(self.input_shape)))
        chunk = max(1, _CHUNK_ELEMENTS // max(1, t * widest))
        outs, chunks = [], []
        for start in range(0, b, chunk):
            o, c = self._run_chunk(x[start : start + chunk])
            outs.append(o)
            chunks.append(c)
        if not outs:
            empty = np.zeros((0, t, *self.output_shape), np.uint8)
            return empty, np.zeros((0, t, len(self._lif), 3), np.int64)
        return np.concatenate(outs), np.concatenate(chunks)

    def _run_chunk(
        self, x: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """The dense path over a chunk of samples ``x`` (B, T, C, H, W), layer by layer over
        the whole window, time-major inside."""
        b, t = x.shape[:2]
        counts = np.zeros((t, b, len(self._lif), 3), np.int64)
        s = np.ascontiguousarray(x.transpose(1, 0, 2, 3, 4))  # time-major (T, B, ...)
        for i, (syn, lif) in enumerate(zip(self._syn, self._lif, strict=True)):
            a_in, shift = self._layer_input(s, syn, lif.n, counts[:, :, i, 0])
            u = np.zeros((b, lif.n), np.int32)
            v = np.zeros((b, lif.n), np.int32)
            out = np.empty((t, b, lif.n), np.uint8)
            if self.engine == "numba":
                # one fused pass over the window; the latency is an index shift, not a copy
                counts[:, :, i, 2] = lif.window(a_in, shift, u, v, out)
            else:
                for step in range(t):
                    src = step - shift
                    zero = np.zeros((b, lif.n), np.int32)
                    out[step] = lif.step(u, v, a_in[src] if src >= 0 else zero)
                counts[:, :, i, 2] = out.sum(axis=2, dtype=np.int64)
            counts[:, :, i, 1] = lif.n
            s = out
        spikes = s.reshape(t, b, *self.output_shape).transpose(1, 0, 2, 3, 4)
        return np.ascontiguousarray(spikes), counts.transpose(1, 0, 2, 3)

    def _layer_input(
        self, s: npt.NDArray[np.uint8], syn: DenseSynapse | None, n: int, ops: npt.NDArray[Any]
    ) -> tuple[npt.NDArray[Any], int]:
        """A layer's input currents (T, B, n) for spikes ``s`` (T, B, ...) and the latency to
        apply to them (step t reads row t - shift); writes the synaptic ops to ``ops`` (T, B)."""
        t, b = s.shape[:2]
        if syn is None:
            return s.reshape(t, b, -1), 0  # input neuron: no synapse, no latency
        ops[...] = self._syn_ops(s.reshape(t * b, -1), syn.fanout).reshape(t, b)
        groups = syn.currents(s.reshape(t * b, *syn.layer.in_shape))
        if len(groups) == 1:
            d, cur = groups[0]
            return cur.reshape(t, b, -1), d + 1  # one step of synaptic latency, plus the delay
        a_in = np.zeros((t, b, n), np.int32)  # dense delays: sum the delay groups once
        for d, cur in groups:
            lag = d + 1
            if lag < t:
                a_in[lag:] += cur.reshape(t, b, -1)[: t - lag]
        return a_in, 0

    def _syn_ops(
        self, flat: npt.NDArray[np.uint8], fanout: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        """Per row of binary ``flat`` (N, n_in): total fan-out of its spikes, int64 (N,)."""
        if self.engine != "numba":
            return synaptic_ops(flat, fanout)
        from hsnn_perception.core.snn import kernels

        out = np.empty(flat.shape[0], np.int64)
        kernels.fanout_sum(np.ascontiguousarray(flat), fanout, out)
        return out

    def run_window(self, spikes: npt.ArrayLike) -> tuple[npt.NDArray[np.uint8], OpCounts]:
        """One sample: ``spikes`` (T, C, H, W) -> (output spikes (T, *output_shape), OpCounts).

        Starts from the reset state; output step t sees input steps <= t - ``latency``.
        """
        arr = np.asarray(spikes)
        if arr.ndim != 4:
            raise SnnInputError(
                f"run_window input: expected (T, C, H, W) with (C, H, W) = "
                f"{list(self.input_shape)}, got shape {list(arr.shape)}"
            )
        out, counts = self.run_with_counts(arr[None])
        return out[0], OpCounts.from_array(counts[0], self.layer_names)


def open_native(
    path: str | Path,
    *,
    compute: str = "auto",
    input_shape: tuple[int, int, int] | None = None,
    engine: str = "auto",
    energy_probe: bool | None = None,
    synapses: str = "auto",
) -> SnnRuntime:
    """The ``native*`` entries of the SNN backend registry (no energy probe: nothing to probe)."""
    network = read_netx(path, input_shape)
    return SnnRuntime(network, compute=compute, engine=engine, synapses=synapses)
