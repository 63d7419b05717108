"""Small SNNs for the runtime tests: built with real slayer blocks, exported with their own
``export_hdf5`` into one netx file (the usual ``layer/<i>`` layout), or written by hand with h5py
where a test needs values slayer does not produce (bias without a norm, huge weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hsnn_perception.core.snn.lava_compat import import_slayer

# Several neuron parameter sets: plain leak, no current decay (iDecay 0), current fully decayed
# each step (iDecay 4096) with no voltage leak, fast leaks with a low threshold.
NEURON_SETS: list[dict[str, float]] = [
    {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.03},
    {"threshold": 0.5, "current_decay": 0.0, "voltage_decay": 0.1},
    {"threshold": 0.5, "current_decay": 1.0, "voltage_decay": 0.0},
    {"threshold": 0.3, "current_decay": 0.5, "voltage_decay": 0.5},
]


def export_blocks(path: Path, blocks: list[Any]) -> Path:
    """Write slayer blocks into one netx HDF5 file, the way lava-dl's examples do."""
    with h5py.File(path, "w") as h:
        layer = h.create_group("layer")
        for i, block in enumerate(blocks):
            block.export_hdf5(layer.create_group(f"{i}"))
    return path


def slayer_forward(blocks: list[Any], x: np.ndarray) -> np.ndarray:
    """slayer's own forward pass. ``x`` (B, T, C, H, W) -> (B, T, *out) as float numpy."""
    import torch

    y = torch.from_numpy(np.moveaxis(x.astype(np.float32), 1, -1))  # slayer is (B, C, H, W, T)
    if blocks and isinstance(blocks[0], import_slayer().block.cuba.Dense):
        y = y.reshape(y.shape[0], -1, y.shape[-1])
    with torch.no_grad():
        for block in blocks:
            y = block(y)
    out = y.numpy()
    return np.moveaxis(out, -1, 1)


def conv_dense_blocks(
    seed: int,
    neuron: dict[str, float],
    in_shape: tuple[int, int, int] = (2, 8, 8),
    channels: int = 4,
    outputs: int = 5,
    delay: bool = False,
    dense_neuron: dict[str, float] | None = None,
) -> list[Any]:
    """Conv (stride 2, padding 1) -> flatten -> dense, random weights; the dense layer uses
    ``dense_neuron`` if given, else the conv's ``neuron``."""
    import torch

    slayer = import_slayer()
    torch.manual_seed(seed)
    c, h, w = in_shape
    conv = slayer.block.cuba.Conv(neuron, c, channels, 3, stride=2, padding=1, weight_scale=3)
    oh, ow = (h + 1) // 2, (w + 1) // 2
    dense = slayer.block.cuba.Dense(
        dense_neuron or neuron, channels * oh * ow, outputs, weight_scale=3, delay=delay
    )
    if delay:
        # slayer draws delays in [0, 1) on the first forward pass; set integer ones instead
        gen = torch.Generator().manual_seed(seed)
        dense.delay.delay.data = torch.randint(0, 4, (outputs,), generator=gen).float()
        dense.delay.init = True
    return [conv, slayer.block.cuba.Flatten(), dense]


def dense_blocks(
    seed: int, neuron: dict[str, float], n_in: int = 12, hidden: int = 10, outputs: int = 4
) -> list[Any]:
    """Dense -> dense, random weights (the second one with axonal delays)."""
    import torch

    slayer = import_slayer()
    torch.manual_seed(seed)
    first = slayer.block.cuba.Dense(neuron, n_in, hidden, weight_scale=4)
    second = slayer.block.cuba.Dense(neuron, hidden, outputs, weight_scale=4, delay=True)
    gen = torch.Generator().manual_seed(seed + 1)
    second.delay.delay.data = torch.randint(0, 3, (outputs,), generator=gen).float()
    second.delay.init = True
    return [first, second]


def add_bias(path: Path, layer: int, bias: np.ndarray) -> None:
    """Add a per-channel / per-neuron integer bias to an exported layer (netx reads 'bias')."""
    with h5py.File(path, "a") as h:
        group = h[f"layer/{layer}"]
        if "bias" in group:
            del group["bias"]
        group.create_dataset("bias", data=np.asarray(bias, dtype=np.float64))


def random_spikes(
    rng: np.random.Generator, shape: tuple[int, ...], rate: float = 0.3
) -> np.ndarray:
    return (rng.random(shape) < rate).astype(np.uint8)


def write_net(path: Path, layers: list[dict[str, Any]]) -> Path:
    """Write a netx file by hand: each dict maps dataset names (``neuron/iDecay`` etc.) to values;
    the string ``type`` is stored like slayer stores it."""
    with h5py.File(path, "w") as h:
        root = h.create_group("layer")
        for i, spec in enumerate(layers):
            group = root.create_group(f"{i}")
            for key, value in spec.items():
                if key in ("type", "neuron/type"):
                    group.create_dataset(key, (1,), "S10", [str(value).encode("ascii")])
                else:
                    group.create_dataset(key, data=np.asarray(value))
    return path


def cuba(i_decay: int, v_decay: int, vth: int) -> dict[str, Any]:
    return {
        "neuron/type": "CUBA",
        "neuron/iDecay": i_decay,
        "neuron/vDecay": v_decay,
        "neuron/vThMant": vth,
        "neuron/refDelay": 1,
        "neuron/gradedSpike": False,
    }


def conv_spec(
    weight: np.ndarray,
    shape: tuple[int, int, int],
    stride: int = 1,
    padding: int = 0,
    neuron: dict[str, Any] | None = None,
    groups: int = 1,
) -> dict[str, Any]:
    return {
        "type": "conv",
        "shape": np.array(shape),
        "inChannels": weight.shape[1] * groups,
        "outChannels": weight.shape[0],
        "kernelSize": np.array(weight.shape[2:]),
        "stride": np.array([stride, stride]),
        "padding": np.array([padding, padding]),
        "dilation": np.array([1, 1]),
        "groups": groups,
        "weight": weight.astype(np.float64),
        **(neuron or cuba(1024, 128, 64)),
    }


def dense_spec(weight: np.ndarray, neuron: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "dense",
        "shape": np.array([weight.shape[0]]),
        "inFeatures": weight.shape[1],
        "outFeatures": weight.shape[0],
        "weight": weight.astype(np.float64),
        **(neuron or cuba(1024, 128, 64)),
    }
