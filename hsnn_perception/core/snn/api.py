"""What every SNN backend shares: its Protocol (``SnnBackend``), the operation counts it reports
(``OpCounts``), the input check, the errors, and ``load_snn``, which picks a backend by its
registry name (``registry.SNN_BACKENDS``) and imports only that backend's module.

Importing this module costs numpy and the standard library: no backend, torch, numba or Lava.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from hsnn_perception.core.errors import SnnError
from hsnn_perception.core.registry import SNN_BACKENDS, UnknownNameError

COUNT_FIELDS = ("synaptic_ops", "neuron_updates", "spikes")


class SnnInputError(SnnError, ValueError):
    """Input spikes of the wrong shape, dtype or values."""


class SnnConfigError(SnnError, ValueError):
    """Unknown backend or option."""


@dataclass
class OpCounts:
    """Operations an energy model needs, summed over the timesteps (and samples) it covers.

    ``synaptic_ops``: input spikes x structural fan-out (synapses reached, zero weights included);
    ``neuron_updates``: neurons x timesteps; ``spikes``: output spikes of all layers.
    ``per_layer``: one dict per layer with ``layer`` (name) and the three counts.
    """

    synaptic_ops: int = 0
    neuron_updates: int = 0
    spikes: int = 0
    per_layer: list[dict[str, Any]] = field(default_factory=list)
    timesteps: int = 0

    def __add__(self, other: OpCounts) -> OpCounts:
        if not isinstance(other, OpCounts):
            return NotImplemented
        if self.per_layer and other.per_layer:
            names = [d["layer"] for d in self.per_layer]
            if names != [d["layer"] for d in other.per_layer]:
                raise ValueError("cannot add OpCounts of different networks")
            per_layer = [
                {"layer": a["layer"], **{k: int(a[k]) + int(b[k]) for k in COUNT_FIELDS}}
                for a, b in zip(self.per_layer, other.per_layer, strict=True)
            ]
        else:
            per_layer = [dict(d) for d in (self.per_layer or other.per_layer)]
        return OpCounts(
            synaptic_ops=self.synaptic_ops + other.synaptic_ops,
            neuron_updates=self.neuron_updates + other.neuron_updates,
            spikes=self.spikes + other.spikes,
            per_layer=per_layer,
            timesteps=self.timesteps + other.timesteps,
        )

    def __radd__(self, other: Any) -> OpCounts:
        if other == 0:  # lets sum() start from 0
            return self
        return self.__add__(other)

    @classmethod
    def from_array(cls, counts: npt.ArrayLike, layer_names: list[str]) -> OpCounts:
        """Sum a ``(..., T, L, 3)`` count array (see ``SnnRuntime.run_with_counts``)."""
        arr = np.asarray(counts, dtype=np.int64)
        per = arr.reshape(-1, arr.shape[-2], 3).sum(axis=0)
        timesteps = arr.shape[-3] if arr.ndim >= 3 else 1
        per_layer = [
            {"layer": name, **{k: int(per[i, j]) for j, k in enumerate(COUNT_FIELDS)}}
            for i, name in enumerate(layer_names)
        ]
        total = per.sum(axis=0)
        return cls(int(total[0]), int(total[1]), int(total[2]), per_layer, int(timesteps))


def check_spikes(
    input_shape: tuple[int, int, int],
    x: npt.ArrayLike,
    lead: int,
    what: str,
    uint8_values: bool = True,
) -> npt.NDArray[np.uint8]:
    """Validate binary spikes of shape (*lead dims, C, H, W); return them as uint8.

    ``uint8_values=False``: a uint8 array's values are left for the caller to check (the
    event-driven runtime checks them while it reads them); every other dtype is checked here."""
    arr = np.asarray(x)
    want = tuple(input_shape)
    if arr.ndim != lead + 3 or tuple(arr.shape[lead:]) != want:
        raise SnnInputError(
            f"{what}: expected shape {what_shape(lead)} with (C, H, W) = {list(want)}, "
            f"got {list(arr.shape)}"
        )
    if arr.dtype == np.bool_:
        return arr.view(np.uint8)
    if arr.dtype != np.uint8 or uint8_values:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise SnnInputError(f"{what}: dtype {arr.dtype} is not a spike array")
        if arr.size and np.issubdtype(arr.dtype, np.integer):
            binary = arr.min() >= 0 and arr.max() <= 1
        else:
            binary = not arr.size or bool(np.isin(arr, (0, 1)).all())
        if not binary:
            raise SnnInputError(f"{what}: spikes must be binary (0/1)")
    return arr.astype(np.uint8, copy=False)


def what_shape(lead: int) -> str:
    """The shape a spike array with ``lead`` leading dimensions should have, for messages."""
    return {0: "(C, H, W)", 1: "(B, C, H, W) or (T, C, H, W)", 2: "(B, T, C, H, W)"}.get(
        lead, "(..., C, H, W)"
    )


@runtime_checkable
class SnnBackend(Protocol):
    """What ``load_snn`` returns and the SNN node, the offline evaluation and the calibration
    use: one window of one sample at a time, each from the reset state. A backend with an
    energy probe also has ``last_measurement`` and ``probe_error`` (see LavaSnn)."""

    input_shape: tuple[int, int, int]  # (C, H, W)
    output_shape: tuple[int, int, int]
    backend_name: str  # what runs it, for logs and energy reports

    def run_window(self, spikes: npt.NDArray[Any]) -> tuple[npt.NDArray[np.uint8], OpCounts | None]:
        """``spikes`` (T, C, H, W) binary -> (output spikes (T, *output_shape) uint8, counts)."""
        ...

    def close(self) -> None:
        """Release what runs the network (worker processes, a board); idempotent."""
        ...


def load_snn(
    path: str | Path,
    backend: str = "native",
    input_shape: tuple[int, int, int] | None = None,
    engine: str = "auto",
    energy_probe: bool | None = None,
) -> SnnBackend:
    """Load a netx HDF5 SNN for execution on ``backend``, a name of
    :data:`~hsnn_perception.core.registry.SNN_BACKENDS` (its module is imported now).

    ``"native"`` (this project's runtime: event-driven numba kernels where the input is sparse,
    numpy where it is dense, never torch), ``"native-numpy"``, ``"native-torch"``, ``"lava"``
    (Lava CPU simulation, ``Loihi2SimCfg(select_tag='fixed_pt')``) or ``"lava-hw"`` (Loihi 2
    through lava-loihi). ``input_shape`` (C, H, W) is needed only when the file has no input
    layer and starts with a conv. ``engine`` (native only): ``"auto"``, ``"numba"`` or
    ``"numpy"``, see ``SnnRuntime``. ``energy_probe`` (Lava only; default on for ``"lava-hw"``)
    measures each window's energy with Lava's Loihi 2 profiler.
    """
    try:
        entry = SNN_BACKENDS.entry(backend)
    except UnknownNameError as exc:
        raise SnnConfigError(str(exc)) from None
    opener = entry.load()
    snn: SnnBackend = opener(
        path, input_shape=input_shape, engine=engine, energy_probe=energy_probe, **entry.options
    )
    return snn
