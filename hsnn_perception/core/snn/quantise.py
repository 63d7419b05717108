"""Loihi's fixed-point limits and the threshold calibration that both paths mapping real-valued
weights onto Loihi share: ANN-to-SNN conversion (training/convert.py) and NIR import
(nir/fixed_point.py). Also the netx HDF5 writer for such layer lists."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

WEIGHT_MAX = 254  # Loihi 8-bit mixed-sign weights: even values in [-256, 254]
VTH_MAX = (1 << 17) - 1  # vThMant field
CURRENT_MAX = 1 << 17  # |a_in| << 6 must stay within Loihi's 24-bit current
# Threshold corrections per layer from the measured spike rates (see rate_gain).
GAIN_PASSES = 2

# One netx layer: its type ("input", "conv", "dense") and its datasets by name.
NetxLayer = tuple[str, dict[str, Any]]


def even_weights(values: NDArray[Any]) -> NDArray[Any]:
    """``values`` rounded to Loihi's 8-bit mixed-sign weights (even integers in [-254, 254])."""
    even: NDArray[Any] = (2 * np.round(values / 2)).clip(-WEIGHT_MAX, WEIGHT_MAX)
    return even


def write_netx(path: Path, layers: list[NetxLayer]) -> None:
    """Write ``layers`` as a netx HDF5 file (groups layer/0, layer/1, ... in order)."""
    import h5py

    with h5py.File(path, "w") as h:
        root = h.create_group("layer")
        for i, (kind, spec) in enumerate(layers):
            group = root.create_group(str(i))
            group.create_dataset("type", (1,), "S10", [kind.encode("ascii")])
            for key, value in spec.items():
                if key == "neuron/type":
                    group.create_dataset(key, (1,), "S10", [str(value).encode("ascii")])
                else:
                    group.create_dataset(key, data=np.asarray(value))


def rate_gain(
    specs: list[NetxLayer], spikes: NDArray[Any], expected: NDArray[Any], useful: int
) -> float:
    """Measured over expected spike rate of the last layer of ``specs`` on ``spikes``.

    Loihi's reset to zero drops the overshoot above threshold at every spike and its threshold is
    strict (``v > vth``), so an integrate-and-fire neuron fires less than its normalised input
    says (by about half a step of input per spike). Dividing the threshold by this gain, measured
    with the real runtime on the calibration data, removes that bias layer by layer.
    """
    from hsnn_perception.core.snn.netx import read_netx
    from hsnn_perception.core.snn.runtime import SnnRuntime

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calibration.net"
        write_netx(path, specs)
        out, _ = SnnRuntime(read_netx(path)).run_with_counts(spikes.astype(np.uint8))
    rates = out.reshape(out.shape[0], out.shape[1], -1).sum(axis=1) / max(useful, 1)
    want = float(expected.sum())
    return float(rates.sum()) / want if want > 0 else 0.0
