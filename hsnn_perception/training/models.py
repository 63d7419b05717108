"""The paper's model family: six layers, the first ``k`` spiking (SkA(6-k)), the rest an ANN.

Layers (input ``C x H x W``, default 2 x 32 x 32)::

    L1 conv 3x3 stride 2   -> c1 x H/2 x W/2
    L2 conv 3x3 stride 2   -> c2 x H/4 x W/4
    L3 conv 3x3 stride 2   -> c3 x H/8 x W/8
    L4 conv 3x3 stride 1   -> c4 x H/8 x W/8
    L5 dense               -> hidden
    L6 dense               -> classes

The spiking layers are lava-dl slayer CUBA blocks (Loihi-ready, 8-bit weights, one timestep of
synaptic latency each), downsampling with strided convolutions because netx cannot load pooling.
Their output spikes are summed over intervals of ``I`` timesteps by the project's accumulator and
the ``T/I`` frames are stacked on the channel axis; the ANN layers take that as a ``F*C x h x w``
image (conv layers) or a flat vector (dense layers). ``k = 0`` is the ANN baseline (the input spikes
go straight to the accumulator), ``k = 6`` the SNN baseline (class = argmax of output spike counts).

torch and lava-dl are imported lazily (``build_model``), so importing this module is cheap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

from hsnn_perception.core.errors import ModelError
from hsnn_perception.core.hybrid.accumulator import check_interval

N_LAYERS = 6
N_CONV = 4

# CUBA neuron parameters (slayer units; exported as Loihi fixed point). Decays are not trained so
# that the exported 12-bit decays are exactly those trained with.
DEFAULT_NEURON: dict[str, float] = {
    "threshold": 1.0,
    "current_decay": 0.25,
    "voltage_decay": 0.03,
    "tau_grad": 0.03,
    "scale_grad": 3.0,
}


class ModelSpecError(ModelError, ValueError):
    """An impossible model specification (k, interval, geometry...)."""


@dataclass(frozen=True)
class ArchSpec:
    """Everything that fixes the shapes of a model of the family."""

    k: int = 2
    interval: int = 4
    timesteps: int = 16
    in_channels: int = 2
    height: int = 32
    width: int = 32
    channels: tuple[int, int, int, int] = (16, 32, 32, 32)
    hidden: int = 64
    num_classes: int = 11
    neuron: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_NEURON))
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.k <= N_LAYERS:
            raise ModelSpecError(f"k (spiking layers) must be in 0..{N_LAYERS}, got {self.k}")
        try:
            check_interval(self.timesteps, self.interval)
        except ValueError as exc:
            raise ModelSpecError(str(exc)) from exc
        if len(self.channels) != N_CONV or min(self.channels) < 1 or self.hidden < 1:
            raise ModelSpecError(f"channels must be {N_CONV} positive ints, got {self.channels}")
        if self.height % 8 or self.width % 8 or self.height < 8 or self.width < 8:
            raise ModelSpecError(
                f"input {self.height}x{self.width}: height and width must be multiples of 8 "
                "(three stride-2 layers)"
            )
        if self.num_classes < 2 or self.in_channels < 1:
            raise ModelSpecError("need at least 2 classes and 1 input channel")

    @property
    def frames(self) -> int:
        return self.timesteps // self.interval

    @property
    def name(self) -> str:
        """Paper notation: A6 (ANN), S6 (SNN) or SkA(6-k)."""
        if self.k == 0:
            return "A6"
        if self.k == N_LAYERS:
            return "S6"
        return f"S{self.k}A{N_LAYERS - self.k}"

    def layer_shapes(self) -> list[tuple[int, int, int]]:
        """Output shape (C, H, W) of L0 (input) .. L6; dense layers are (N, 1, 1)."""
        c1, c2, c3, c4 = self.channels
        h, w = self.height, self.width
        return [
            (self.in_channels, h, w),
            (c1, h // 2, w // 2),
            (c2, h // 4, w // 4),
            (c3, h // 8, w // 8),
            (c4, h // 8, w // 8),
            (self.hidden, 1, 1),
            (self.num_classes, 1, 1),
        ]

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """Shape of one timestep at the accumulator (output of the SNN part, or the input)."""
        return self.layer_shapes()[self.k]

    @property
    def ann_input_shape(self) -> tuple[int, int, int, int]:
        c, h, w = self.feature_shape
        return (1, self.frames * c, h, w)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["channels"] = list(self.channels)
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ArchSpec:
        doc = dict(doc)
        if "channels" in doc:
            doc["channels"] = tuple(int(c) for c in doc["channels"])
        return cls(**doc)


def _torch() -> Any:
    import torch

    return torch


def build_model(spec: ArchSpec) -> Any:
    """Return a fresh :class:`HybridNet` (a ``torch.nn.Module``) for ``spec``."""
    return _hybrid_net_class()(spec)


@cache
def _hybrid_net_class() -> type:
    """Define the torch module classes on first use (keeps torch out of plain imports)."""
    torch = _torch()
    nn = torch.nn
    from hsnn_perception.core.hybrid.accumulator import accumulate, frames_to_channels
    from hsnn_perception.core.snn.lava_compat import import_slayer

    slayer = import_slayer()

    class HybridNet(nn.Module):
        """SNN part (slayer CUBA blocks) -> accumulator -> ANN part (torch layers).

        ``forward(spikes)`` takes input spikes ``(N, C, H, W, T)`` (slayer's layout, time last)
        and returns ``(logits, spike_list)``: logits ``(N, classes)`` and the output spikes of
        each spiking layer (for firing-rate statistics and regularisation).
        """

        def __init__(self, spec: ArchSpec) -> None:
            super().__init__()
            self.spec = spec
            shapes = spec.layer_shapes()
            neuron = dict(spec.neuron)
            snn: list[nn.Module] = []
            for i in range(spec.k):
                cin, cout = shapes[i][0], shapes[i + 1][0]
                if i < N_CONV:
                    stride = 2 if i < 3 else 1
                    snn.append(
                        slayer.block.cuba.Conv(
                            neuron, cin, cout, 3, stride=stride, padding=1, weight_scale=2
                        )
                    )
                else:
                    if i == N_CONV:
                        snn.append(slayer.block.cuba.Flatten())
                    nin = cin * shapes[i][1] * shapes[i][2]
                    snn.append(slayer.block.cuba.Dense(neuron, nin, cout, weight_scale=2))
            self.snn = nn.ModuleList(snn)
            ann: list[nn.Module] = []
            c, h, w = spec.feature_shape
            cin = spec.frames * c  # the accumulated frames are stacked on the channel axis
            for i in range(spec.k, N_LAYERS):
                cout = shapes[i + 1][0]
                if i < N_CONV:
                    stride = 2 if i < 3 else 1
                    ann += [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU()]
                    cin = cout
                    continue
                if i == max(spec.k, N_CONV):  # first dense layer of the ANN part
                    ann.append(nn.Flatten())
                    cin = cin * (h * w if i == spec.k else shapes[i][1] * shapes[i][2])
                if i == N_LAYERS - 1:
                    if spec.dropout > 0:
                        ann.append(nn.Dropout(spec.dropout))
                    ann.append(nn.Linear(cin, cout))
                else:
                    ann += [nn.Linear(cin, cout), nn.ReLU()]
                cin = cout
            self.ann = nn.Sequential(*ann) if ann else None

        def run_snn(self, spikes: Any) -> tuple[Any, list[Any]]:
            """SNN part: ``(N, C, H, W, T)`` spikes -> output spikes ``(N, C', H', W', T)``."""
            x = spikes
            outs = []
            for block in self.snn:
                x = block(x)
                if not isinstance(block, slayer.block.cuba.Flatten):
                    outs.append(x)
            if x.dim() == 3:  # dense output (N, C, T) -> (N, C, 1, 1, T)
                x = x.reshape(x.shape[0], x.shape[1], 1, 1, x.shape[2])
            return x, outs

        def features(self, spikes: Any) -> tuple[Any, list[Any]]:
            """The accumulator output: ANN input ``(N, F*C, h, w)`` (or counts for S6)."""
            x, outs = self.run_snn(spikes)
            # slayer is time-last; the accumulator is (batch, T, ...) like the bridge node.
            x = x.permute(0, 4, 1, 2, 3)
            frames = accumulate(x, self.spec.interval, time_axis=1)
            return frames_to_channels(frames), outs

        def forward(self, spikes: Any) -> tuple[Any, list[Any]]:
            feats, outs = self.features(spikes)
            if self.ann is None:
                # S6: class scores are the output spike counts (summed over all frames).
                n = feats.shape[0]
                counts = feats.reshape(n, self.spec.frames, -1).sum(dim=1)
                return counts, outs
            return self.ann(feats), outs

    return HybridNet
