"""Run a netx HDF5 SNN with Lava itself: lava-dl's ``netx.hdf5.Network`` under
``Loihi2SimCfg(select_tag='fixed_pt')`` on the CPU, or on Loihi 2 through Intel's lava-loihi.

Driving: one ``io.source.RingBuffer`` holding a whole window feeds the network and one
``io.sink.RingBuffer`` per layer records its spikes; each window is run with
``run(condition=RunSteps(T))``. The network is compiled once (per window length) and between
windows every neuron's ``u``/``v`` and every synapse's buffered current are set back to zero, so
each window starts from the reset state like the native runtime (docs/snn_runtime.md says why
this was chosen over injector/extractor processes).

On Loihi 2 hardware the window's energy is measured by Lava's profiler (lava-loihi's
``Loihi2HWProfiler``, see ``core/snn/loihi_profiler.py``) when ``energy_probe`` is on: after each
window ``last_measurement`` holds the board's figure, or None with ``probe_error`` saying why.

Lava runs each process in a worker process: always ``close()`` (or use ``with``) so that
``stop()`` happens; a finaliser stops a forgotten network at garbage collection / exit.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hsnn_perception.core.energy.models import LoihiMeasurement
from hsnn_perception.core.errors import SnnError
from hsnn_perception.core.snn.api import OpCounts, check_spikes
from hsnn_perception.core.snn.loihi_profiler import LoihiEnergyProbe, LoihiProfilerError
from hsnn_perception.core.snn.netx import NetxNetwork, read_netx
from hsnn_perception.core.snn.ops import count_ops


class LavaBackendError(SnnError, RuntimeError):
    """Lava (or its Loihi extension) is missing, or the Lava run failed."""


HW_MISSING = "backend 'lava-hw' needs Intel's lava-loihi extension (INRC), which is not installed"


def _stop(state: dict[str, Any]) -> None:
    net = state.get("net")
    state["net"] = None
    if net is not None:
        try:
            net.stop()
        except Exception:  # already stopped, or the runtime died: nothing left to release
            pass


def lava_loihi_installed() -> bool:
    """Whether Intel's lava-loihi extension (needed for Loihi 2 hardware) can be imported."""
    try:
        from lava.utils import loihi
    except Exception:
        return False
    return bool(loihi.is_installed())


class LavaSnn:
    """An ``SnnBackend`` (core/snn/api.py) executed by Lava; also ``run`` (batched, like
    ``SnnRuntime``'s) and the energy probe's ``last_measurement`` / ``probe_error``."""

    def __init__(
        self,
        path: str | Path,
        input_shape: tuple[int, int, int] | None = None,
        hardware: bool = False,
        energy_probe: bool | None = None,
        probe_factory: Callable[[Any, int], Any] | None = None,
    ) -> None:
        """``energy_probe`` (default: on for hardware) measures each window with Lava's
        profiler; ``probe_factory(run_cfg, steps)`` replaces :class:`LoihiEnergyProbe`."""
        self.path = Path(path)
        self.hardware = hardware
        self.energy_probe = hardware if energy_probe is None else bool(energy_probe)
        self._probe_factory = probe_factory or LoihiEnergyProbe
        self._probe: Any = None
        self.last_measurement: LoihiMeasurement | None = None
        self.probe_error: str | None = None
        if hardware and not lava_loihi_installed():
            raise LavaBackendError(HW_MISSING)
        from hsnn_perception.core.snn.lava_compat import LavaUnavailableError, import_netx

        try:
            self._netx = import_netx()
        except LavaUnavailableError as exc:
            raise LavaBackendError(str(exc)) from exc
        self.network: NetxNetwork = read_netx(self.path, input_shape)
        self.input_shape = self.network.input_shape
        self.output_shape = self.network.output_shape
        self.layer_names = [layer.name for layer in self.network.layers]
        self.backend_name = "lava loihi2 hw" if hardware else "lava loihi2 sim fixed_pt"
        self._state: dict[str, Any] = {"net": None}
        self._finalizer = weakref.finalize(self, _stop, self._state)
        self._steps: int | None = None
        self._started = False  # the compiled network has run (its state needs a reset)

    @property
    def latency(self) -> int:
        return self.network.num_synaptic_layers

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop Lava's runtime and its worker processes (safe to call more than once)."""
        _stop(self._state)
        self._steps = None

    def __enter__(self) -> LavaSnn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building --------------------------------------------------------------------------------
    def _lava_input_shape(self) -> tuple[int, ...] | None:
        c, h, w = self.input_shape
        return (w, h, c)

    def _build(self, first_window: npt.NDArray[Any]) -> None:
        self.close()
        from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg
        from lava.proc import io

        first = self.network.layers[0]
        in_shape = self._lava_input_shape() if first.kind == "conv" else None
        net = self._netx.hdf5.Network(net_config=str(self.path), input_shape=in_shape)
        self._state["net"] = net  # from here on close() stops it, whatever fails below
        if len(net.layers) != len(self.network.layers):
            raise LavaBackendError(
                f"{self.path}: netx built {len(net.layers)} layers, the reader found "
                f"{len(self.network.layers)}"
            )
        steps = first_window.shape[0]
        # The source is created holding the first window: Var.set needs a compiled network.
        self._source = io.source.RingBuffer(data=self._to_lava(first_window))
        for block in net.layers:
            # netx 0.6's Input block never connects its in-port to its neuron, and Lava then
            # cannot compile it ("No subcompiler ... PyInputModel"); make the connection it means.
            if type(block).__name__ == "Input" and not block.inp.out_connections:
                block.inp.connect(block.neuron.a_in)
        self._sinks = []
        if self.hardware:  # pragma: no cover - needs lava-loihi and a Loihi 2 system
            from lava.proc import embedded_io as eio

            adapter = eio.spike.PyToNxAdapter(shape=net.inp.shape)
            self._source.s_out.connect(adapter.inp)
            adapter.out.connect(net.inp)
            for block in net.layers:
                out_adapter = eio.spike.NxToPyAdapter(shape=block.out.shape)
                sink = io.sink.RingBuffer(shape=block.out.shape, buffer=steps)
                block.out.connect(out_adapter.inp)
                out_adapter.out.connect(sink.a_in)
                self._sinks.append(sink)
            self._run_cfg = Loihi2HwCfg(select_tag="fixed_pt")
        else:
            self._source.s_out.connect(net.inp)
            for block in net.layers:
                sink = io.sink.RingBuffer(shape=block.out.shape, buffer=steps)
                block.out.connect(sink.a_in)
                self._sinks.append(sink)
            self._run_cfg = Loihi2SimCfg(select_tag="fixed_pt")
        self._attach_probe(steps)
        self._blocks = list(net.layers)
        self._steps = steps
        self._started = False

    def _attach_probe(self, steps: int) -> None:
        """Lava's energy probe, before the first run compiles the network (if asked for)."""
        self._probe, self.probe_error = None, None
        if not self.energy_probe:
            return
        try:
            self._probe = self._probe_factory(self._run_cfg, steps)
        except LoihiProfilerError as exc:
            self.probe_error = str(exc)

    def _read_probe(self) -> None:
        self.last_measurement = None
        if self._probe is None:
            return
        try:
            self.last_measurement = self._probe.read()
            self.probe_error = None
        except LoihiProfilerError as exc:
            self.probe_error = str(exc)

    def _reset_state(self) -> None:
        """Zero every neuron state and every synaptic buffer (Lava keeps no other state)."""
        for block in self._blocks:
            for var in (block.neuron.u, block.neuron.v):
                var.set(np.zeros(var.shape, np.int32))
            synapse = getattr(block, "synapse", None)
            for name in ("a_buff", "a_buf"):
                var = getattr(synapse, name, None) if synapse is not None else None
                if var is not None:
                    var.set(np.zeros(var.shape, np.int32))

    # -- running ---------------------------------------------------------------------------------
    def _to_lava(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """(T, C, H, W) -> the network's input port layout with time last."""
        steps = x.shape[0]
        port = tuple(self._state["net"].inp.shape)
        if len(port) == 3:  # (W, H, C)
            return np.ascontiguousarray(x.transpose(3, 2, 1, 0)).astype(np.int32)
        return np.ascontiguousarray(x.reshape(steps, -1).T).astype(np.int32)

    @staticmethod
    def _from_lava(data: npt.NDArray[Any], shape: tuple[int, int, int]) -> npt.NDArray[Any]:
        """Sink data (..., T) in Lava layout -> (T, C, H, W) uint8."""
        data = np.asarray(data)
        steps = data.shape[-1]
        if data.ndim == 4:  # (W, H, C, T)
            return data.transpose(3, 2, 1, 0).astype(np.uint8).reshape(steps, *shape)
        return data.reshape(-1, steps).T.astype(np.uint8).reshape(steps, *shape)

    def run_window(self, spikes: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], OpCounts]:
        """One sample (T, C, H, W) -> (output spikes (T, *output_shape) uint8, OpCounts)."""
        from lava.magma.core.run_conditions import RunSteps

        arr = np.asarray(spikes)
        x = check_spikes(self.input_shape, arr, 1, "run_window input")
        steps = x.shape[0]
        if steps < 1:
            raise ValueError("run_window input: needs at least one timestep")
        if self._steps != steps or self._state["net"] is None:
            self._build(x)
        else:
            if self._started:
                self._reset_state()
            self._source.data.set(self._to_lava(x))
        net = self._state["net"]
        try:
            net.run(condition=RunSteps(num_steps=steps), run_cfg=self._run_cfg)
            self._started = True
            self._read_probe()
            layer_spikes = [
                self._from_lava(sink.data.get(), layer.out_shape)
                for sink, layer in zip(self._sinks, self.network.layers, strict=True)
            ]
        except Exception as exc:
            self.close()
            raise LavaBackendError(f"Lava run of {self.path} failed: {exc}") from exc
        counts = count_ops(self.network, x, layer_spikes)
        return layer_spikes[-1], OpCounts.from_array(counts, self.layer_names)

    def run(self, inputs: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """(B, T, C, H, W) -> (B, T, *output_shape): one Lava run per sample."""
        x = check_spikes(self.input_shape, inputs, 2, "run input")
        return (
            np.stack([self.run_window(sample)[0] for sample in x])
            if len(x)
            else np.zeros((0, x.shape[1], *self.output_shape), np.uint8)
        )


def open_lava(
    path: str | Path,
    *,
    hardware: bool,
    input_shape: tuple[int, int, int] | None = None,
    engine: str = "auto",
    energy_probe: bool | None = None,
) -> LavaSnn:
    """The ``lava`` / ``lava-hw`` entries of the SNN backend registry (``engine`` is the native
    runtime's: Lava has its own)."""
    return LavaSnn(path, input_shape=input_shape, hardware=hardware, energy_probe=energy_probe)
