"""Read the SNN part of a model: networks that lava-dl's slayer exports as netx HDF5.

The file layout is the one ``block.export_hdf5`` writes and ``lava.lib.dl.netx.hdf5.Network``
reads: a group ``layer`` holding groups ``"0"``, ``"1"``, ... in network order, each with a
``type`` (``input``, ``conv``, ``flatten``, ``dense``), a ``shape`` (slayer order, e.g.
``[C, H, W]`` or ``[N]``), the synapse (``weight``, ``stride``, ``padding``, ``dilation``,
``groups``, optional ``bias`` and ``delay``) and the neuron (``neuron/type``, ``iDecay``,
``vDecay``, ``vThMant``).

This module only reads and checks; it applies none of Loihi's arithmetic (see loihi.py and
runtime.py). Everything is reported in the (C, H, W) order of slayer and torch; Lava's (W, H, C)
order is the runtime's business. Values are read the way netx reads them (weights and biases
cast with ``astype(int)``, dense delays clipped to 0..62 and expanded to a full matrix), so that
the runtime and netx start from the same numbers.

A file can be hostile (docs/hostile_inputs.md): every dataset is bounded before it is read
(MAX_* below). The reader and its bounds stay in one module, a little over 500 lines, so that
no path through the file escapes a check.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hsnn_perception.core.errors import ModelError

SUPPORTED_LAYER_TYPES = ("input", "conv", "flatten", "dense")
# Types netx knows but cannot build (it raises NotImplementedError) or that this runtime lacks.
KNOWN_UNSUPPORTED = ("pool", "convT", "unpool", "average", "concat", "dense_rec", "dense_comp")
SUPPORTED_NEURONS = ("CUBA", "LOIHI")
MAX_DELAY = 62  # netx clamps dense delays to this (Loihi 2 has 6 delay bits)

# Size limits, checked against what the file *declares* (dataset shapes, layer shapes, conv
# geometry) before anything is read or allocated: a few KB of HDF5 can declare gigabytes. Each is
# far above any network this project deploys (the shipped one has 6k neurons and 5k weights) and
# low enough that reading the file and building the runtime stay within a few hundred MB.
MAX_LAYERS = 1024
# Neurons of one layer: the runtime holds several int32 arrays of (timesteps x neurons) per layer
# (2M neurons x 16 steps x 4 B = 128 MiB each), so this bounds a window's working memory.
MAX_LAYER_NEURONS = 1 << 21
MAX_NETWORK_NEURONS = 1 << 23
# Weights are read as int64 (netx's astype(int)): 16M weights = 128 MiB for one layer.
MAX_LAYER_WEIGHTS = 1 << 24
MAX_NETWORK_WEIGHTS = 1 << 25
# Conv geometry: Loihi 2 and slayer nets use small kernels; larger values only come from a
# damaged or hostile file (padding 2000 on a 3x3 kernel asked for a 16.6 GB buffer).
MAX_KERNEL = 64
MAX_STRIDE = 64
MAX_DILATION = 64
# Scalars, pairs and shapes: a handful of values each.
MAX_PARAM_VALUES = 16

# netx's neuron for a dense layer without a ``neuron`` group: a non-leaky integrator that never
# spikes. ``1 << 18 - 1`` in netx is ``1 << 17`` (operator precedence); kept identical.
DEFAULT_DENSE_NEURON = {"iDecay": 0, "vDecay": 4096, "vThMant": 1 << 17}


class NetxFormatError(ModelError, ValueError):
    """A netx HDF5 file is unreadable, malformed, or uses something this runtime does not run."""


@dataclass(frozen=True)
class CubaParams:
    """Loihi CUBA neuron parameters as stored in the file (12-bit decays, threshold mantissa)."""

    i_decay: int
    v_decay: int
    vth_mant: int


@dataclass
class NetxLayer:
    """One layer that owns neurons (input with neuron, conv or dense).

    ``weight`` is ``(out, in/groups, kh, kw)`` for conv (torch order, not flipped) and
    ``(out, in)`` for dense, with ``in`` indexed like ``torch.flatten`` of ``(C, H, W)``.
    ``bias`` is per output neuron in (C, H, W) order, or None. ``delay`` (dense only) is the full
    ``(out, in)`` integer matrix netx builds. Stride, padding and dilation are (h, w).
    """

    index: int
    kind: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    neuron: CubaParams
    weight: npt.NDArray[Any] | None = None
    bias: npt.NDArray[Any] | None = None
    delay: npt.NDArray[Any] | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    flatten_before: bool = False

    @property
    def name(self) -> str:
        return f"{self.index}:{self.kind}"

    @property
    def num_neurons(self) -> int:
        return int(np.prod(self.out_shape))


@dataclass
class NetxNetwork:
    """A network read from a netx HDF5 file; ``layers`` are the layers that own neurons."""

    path: Path
    input_shape: tuple[int, int, int]
    layers: list[NetxLayer]
    input_from_layer: bool  # True when the file's input layer gave the input shape

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return self.layers[-1].out_shape

    @property
    def num_synaptic_layers(self) -> int:
        """Layers that add one timestep of latency (conv and dense synapses)."""
        return sum(1 for layer in self.layers if layer.kind != "input")


def _as3(shape: tuple[int, ...], where: str) -> tuple[int, int, int]:
    """(C,) -> (C, 1, 1); (C, H, W) stays; anything else is refused."""
    dims = tuple(int(d) for d in shape)
    if len(dims) == 1:
        return (dims[0], 1, 1)
    if len(dims) == 3:
        return dims
    raise NetxFormatError(f"{where}: shape {list(dims)} is neither [N] nor [C, H, W]")


def _dataset(group: Any, key: str, where: str, limit: int) -> Any:
    """``group[key]`` as an h5py Dataset holding at most ``limit`` numbers, checked on its
    declared shape before any data is read, and holding the data it declares."""
    import h5py

    if key not in group:
        raise NetxFormatError(f"{where}: missing '{key}'")
    try:
        ds = group[key]
    except Exception as exc:  # broken links, unreadable object headers
        raise NetxFormatError(f"{where}: cannot open '{key}': {exc}") from exc
    if not isinstance(ds, h5py.Dataset):
        raise NetxFormatError(f"{where}: '{key}' is not a dataset")
    if ds.shape is None:
        raise NetxFormatError(f"{where}: '{key}' is an empty (null) dataset")
    count = 1
    for d in ds.shape:
        count *= int(d)
    if count > limit:
        raise NetxFormatError(
            f"{where}: '{key}' declares shape {list(ds.shape)} ({count} values), more than the "
            f"limit of {limit} for this field"
        )
    text = ds.dtype.kind == "S" or h5py.check_string_dtype(ds.dtype) is not None
    if not text and ds.dtype.kind not in "biuf":
        raise NetxFormatError(f"{where}: '{key}' has data type {ds.dtype}, not numbers")
    try:
        unfiltered = ds.id.get_create_plist().get_nfilters() == 0
        stored = ds.id.get_storage_size()
    except Exception as exc:
        raise NetxFormatError(f"{where}: cannot inspect '{key}': {exc}") from exc
    declared = count * ds.dtype.itemsize
    # Without compression the file must hold every declared byte; less means a dataset that
    # was never written (reading would invent fill values) or a truncated file.
    if unfiltered and not text and 0 < declared and stored < declared:
        raise NetxFormatError(
            f"{where}: '{key}' declares {declared} bytes but the file stores {stored}"
        )
    return ds


def _read_str(group: Any, key: str, where: str) -> str:
    ds = _dataset(group, key, where, MAX_PARAM_VALUES)
    try:
        value = ds[()]
    except Exception as exc:
        raise NetxFormatError(f"{where}: cannot read '{key}': {exc}") from exc
    if isinstance(value, np.ndarray):
        if value.size == 0:
            raise NetxFormatError(f"{where}: empty '{key}'")
        value = value.reshape(-1)[0]
    if isinstance(value, bytes | np.bytes_):
        return value.decode("ascii", "ignore")
    return str(value)


def _read_array(
    group: Any, key: str, where: str, limit: int = MAX_PARAM_VALUES
) -> npt.NDArray[Any]:
    ds = _dataset(group, key, where, limit)
    try:
        arr = np.asarray(ds[()])
    except Exception as exc:  # h5py raises many kinds on odd datasets
        raise NetxFormatError(f"{where}: cannot read '{key}': {exc}") from exc
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise NetxFormatError(f"{where}: '{key}' holds NaN or infinite values")
    if arr.dtype.kind in "iuf" and arr.size and np.abs(arr).max() >= 2.0**62:
        raise NetxFormatError(f"{where}: '{key}' holds values beyond the int64 range")
    return arr


def _dims(group: Any, key: str, where: str) -> tuple[int, ...]:
    """A stored shape: positive integers, each and their product within the neuron limit."""
    dims = tuple(int(d) for d in _read_array(group, key, where).reshape(-1))
    if not dims or min(dims) < 1:
        raise NetxFormatError(f"{where}: '{key}' {list(dims)} must be positive sizes")
    _check_neurons(dims, where, key)
    return dims


def _check_neurons(dims: tuple[int, ...], where: str, what: str) -> None:
    count = 1
    for d in dims:
        count *= int(d)
    if count > MAX_LAYER_NEURONS:
        raise NetxFormatError(
            f"{where}: {what} {list(dims)} is {count} neurons, more than the limit of "
            f"{MAX_LAYER_NEURONS} per layer"
        )


def _read_int(group: Any, key: str, where: str) -> int:
    arr = _read_array(group, key, where)
    if arr.size != 1:
        raise NetxFormatError(
            f"{where}: '{key}' must be a scalar, got shape {list(arr.shape)} "
            "(per-neuron values are not supported: Lava's LIF takes one value per layer)"
        )
    try:
        return int(arr.reshape(-1)[0])
    except (TypeError, ValueError) as exc:
        raise NetxFormatError(f"{where}: '{key}' is not a number") from exc


def _pair(group: Any, key: str, where: str, default: int) -> tuple[int, int]:
    if key not in group:
        return (default, default)
    arr = _read_array(group, key, where).reshape(-1)
    if arr.size == 1:
        return (int(arr[0]), int(arr[0]))
    if arr.size == 2:
        return (int(arr[0]), int(arr[1]))
    raise NetxFormatError(f"{where}: '{key}' must have 1 or 2 values, got {arr.size}")


def _read_neuron(group: Any, where: str, default: dict[str, int] | None = None) -> CubaParams:
    if "neuron" not in group:
        if default is None:
            raise NetxFormatError(f"{where}: missing 'neuron' group")
        return CubaParams(default["iDecay"], default["vDecay"], default["vThMant"])
    neuron = group["neuron"]
    kind = _read_str(neuron, "type", f"{where}/neuron")
    if kind not in SUPPORTED_NEURONS:
        raise NetxFormatError(
            f"{where}: neuron type '{kind}' is not supported (only CUBA / LOIHI LIF neurons)"
        )
    params = CubaParams(
        i_decay=_read_int(neuron, "iDecay", f"{where}/neuron"),
        v_decay=_read_int(neuron, "vDecay", f"{where}/neuron"),
        vth_mant=_read_int(neuron, "vThMant", f"{where}/neuron"),
    )
    for key, value in (("iDecay", params.i_decay), ("vDecay", params.v_decay)):
        if not 0 <= value <= 4096:
            raise NetxFormatError(f"{where}/neuron: {key}={value} is outside 0..4096")
    if params.vth_mant < 0:
        raise NetxFormatError(f"{where}/neuron: vThMant={params.vth_mant} is negative")
    return params


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _read_bias(group: Any, out_shape: tuple[int, int, int], where: str) -> npt.NDArray[Any] | None:
    """Bias per output neuron, (C*H*W,) in C, H, W order, cast like netx (astype(int))."""
    if "bias" not in group:
        return None
    c, h, w = out_shape
    bias = _read_array(group, "bias", where, c * h * w).astype(int)
    if bias.size == 1 and c * h * w != 1:
        raise NetxFormatError(f"{where}: a scalar bias is not supported by netx")
    if bias.ndim == 1 and bias.size == c:
        return np.repeat(bias, h * w)  # one value per channel (what slayer exports)
    if bias.size == c * h * w and bias.ndim == 3 and bias.shape == (w, h, c):
        return bias.transpose(2, 1, 0).reshape(-1)  # per neuron, in Lava's (W, H, C) order
    raise NetxFormatError(
        f"{where}: bias of shape {list(bias.shape)} cannot be broadcast to the layer's "
        f"{c} channels / shape {list(out_shape)}"
    )


def read_netx(path: str | Path, input_shape: tuple[int, ...] | None = None) -> NetxNetwork:
    """Read and check a netx HDF5 network.

    ``input_shape`` (C, H, W) is needed when the file has no input layer and starts with a conv
    (netx needs it too); when given for a dense-first network, the input is flattened C-order.
    Raises NetxFormatError naming the layer and the problem.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise NetxFormatError(f"{path}: no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise NetxFormatError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with handle:
        if "layer" not in handle or not isinstance(handle["layer"], h5py.Group):
            raise NetxFormatError(f"{path}: no 'layer' group (not a netx network description)")
        return _read_layers(path, handle["layer"], input_shape)


def _read_layers(path: Path, groups: Any, input_shape: tuple[int, ...] | None) -> NetxNetwork:
    n = len(groups)
    if n == 0:
        raise NetxFormatError(f"{path}: the 'layer' group is empty")
    if n > MAX_LAYERS:
        raise NetxFormatError(f"{path}: {n} layers, more than the limit of {MAX_LAYERS}")
    names = set(groups.keys())
    expected = {str(i) for i in range(n)}
    if names != expected:
        raise NetxFormatError(
            f"{path}: layers must be named 0..{n - 1}; found {sorted(names, key=str)}"
        )

    given = _as3(tuple(input_shape), f"{path}: input_shape") if input_shape else None
    if given is not None:
        if min(given) < 1:
            raise NetxFormatError(f"{path}: input_shape {list(given)} must be positive sizes")
        _check_neurons(given, f"{path}", "input_shape")
    totals = {"neurons": 0, "weights": 0}
    shape: tuple[int, int, int] | None = given  # shape flowing into the next layer
    net_input: tuple[int, int, int] | None = given
    from_layer = False
    layers: list[NetxLayer] = []
    flatten_next = False

    for i in range(n):
        group = groups[str(i)]
        where = f"{path}: layer {i}"
        if not hasattr(group, "keys"):
            raise NetxFormatError(f"{where}: is not a group")
        kind = _read_str(group, "type", where)
        where = f"{path}: layer {i} ({kind})"
        if kind in KNOWN_UNSUPPORTED:
            raise NetxFormatError(
                f"{where}: layer type '{kind}' is not supported (netx cannot build it either; "
                "use strided conv instead of pooling)"
            )
        if kind not in SUPPORTED_LAYER_TYPES:
            supported = ", ".join(SUPPORTED_LAYER_TYPES)
            raise NetxFormatError(f"{where}: unknown layer type '{kind}' (supported: {supported})")

        if kind == "input":
            if layers:
                raise NetxFormatError(f"{where}: an input layer must come first")
            file_shape = _as3(_dims(group, "shape", where), where)
            if given is not None and int(np.prod(given)) != int(np.prod(file_shape)):
                raise NetxFormatError(
                    f"{where}: input_shape {list(given)} does not match the file's input shape "
                    f"{list(file_shape)}"
                )
            shape = net_input = file_shape if given is None or given == file_shape else given
            from_layer = True
            if "neuron" in group:
                _count(totals, "neurons", int(np.prod(shape)), where)
                layers.append(NetxLayer(i, "input", shape, shape, _read_neuron(group, where)))
            continue

        if kind == "flatten":
            flatten_next = True
            continue

        if kind == "conv":
            if shape is None:
                raise NetxFormatError(
                    f"{where}: the input shape cannot be inferred (no input layer before the "
                    "first conv); pass input_shape=(C, H, W)"
                )
            if flatten_next:
                raise NetxFormatError(f"{where}: a conv cannot follow a flatten layer")
            _check_conv_geometry(group, shape, where)
            weight = _read_array(group, "weight", where, MAX_LAYER_WEIGHTS).astype(int)
            _count(totals, "weights", weight.size, where)
            if weight.ndim == 5 and weight.shape[-1] == 1:
                weight = weight.reshape(weight.shape[:4])
            if weight.ndim != 4:
                raise NetxFormatError(
                    f"{where}: conv weight must be (out, in, kh, kw), got {list(weight.shape)}"
                )
            groups_n = _read_int(group, "groups", where) if "groups" in group else 1
            stride = _pair(group, "stride", where, 1)
            padding = _pair(group, "padding", where, 0)
            dilation = _pair(group, "dilation", where, 1)
            c_in, h_in, w_in = shape
            c_out, c_per_group, kh, kw = weight.shape
            if groups_n < 1 or c_in % groups_n or c_out % groups_n:
                raise NetxFormatError(
                    f"{where}: groups={groups_n} does not divide {c_in} input / {c_out} output "
                    "channels"
                )
            if c_per_group * groups_n != c_in:
                raise NetxFormatError(
                    f"{where}: weight expects {c_per_group * groups_n} input channels but the "
                    f"previous layer gives {c_in} (shape {list(shape)})"
                )
            if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
                raise NetxFormatError(
                    f"{where}: invalid stride {stride} / padding {padding} / dilation {dilation}"
                )
            h_out = _conv_out(h_in, kh, stride[0], padding[0], dilation[0])
            w_out = _conv_out(w_in, kw, stride[1], padding[1], dilation[1])
            if h_out < 1 or w_out < 1:
                raise NetxFormatError(
                    f"{where}: kernel {kh}x{kw} does not fit input {h_in}x{w_in} "
                    f"(stride {stride}, padding {padding}, dilation {dilation})"
                )
            out_shape = (c_out, h_out, w_out)
            _check_neurons(out_shape, where, "output shape")
            _count(totals, "neurons", c_out * h_out * w_out, where)
            if "shape" in group:
                file_shape = _as3(_dims(group, "shape", where), where)
                if file_shape != out_shape:
                    raise NetxFormatError(
                        f"{where}: stored shape {list(file_shape)} does not chain: the conv "
                        f"on input {list(shape)} gives {list(out_shape)}"
                    )
            if "delay" in group:
                warnings.warn(
                    f"{where}: conv delays are ignored (netx ignores them too)", stacklevel=3
                )
            layer = NetxLayer(
                i,
                "conv",
                shape,
                out_shape,
                _read_neuron(group, where),
                weight=weight,
                bias=_read_bias(group, out_shape, where),
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups_n,
            )
            layers.append(layer)
            shape = out_shape
            continue

        # dense
        if "weight" not in group:
            raise NetxFormatError(f"{where}: missing 'weight'")
        if isinstance(group["weight"], type(groups)):
            raise NetxFormatError(f"{where}: complex (real/imag) dense weights are not supported")
        n_out = int(np.prod(_dims(group, "shape", where)))
        _count(totals, "neurons", n_out, where)
        weight = _read_array(group, "weight", where, MAX_LAYER_WEIGHTS).astype(int)
        _count(totals, "weights", weight.size, where)
        if weight.ndim == 1:
            if n_out < 1 or weight.size % n_out:
                raise NetxFormatError(
                    f"{where}: weight of size {weight.size} does not fit {n_out} outputs"
                )
            weight = weight.reshape(n_out, -1)
        if weight.ndim != 2 or weight.shape[0] != n_out:
            raise NetxFormatError(
                f"{where}: weight of shape {list(weight.shape)} does not match {n_out} outputs"
            )
        n_in = weight.shape[1]
        if shape is None:
            shape = net_input = (n_in, 1, 1)
        elif int(np.prod(shape)) != n_in:
            raise NetxFormatError(
                f"{where}: weight expects {n_in} inputs but the previous layer gives "
                f"{int(np.prod(shape))} (shape {list(shape)})"
            )
        if layers and layers[-1].kind in ("conv", "input") and shape[1:] != (1, 1):
            if not flatten_next:
                raise NetxFormatError(
                    f"{where}: a dense layer after a {layers[-1].kind} of shape {list(shape)} "
                    "needs a flatten layer between them"
                )
        out_shape = (n_out, 1, 1)
        delay = None
        if "delay" in group:
            raw_delay = _read_array(group, "delay", where, max(weight.size, 1))
            delay = _dense_delay(raw_delay, weight.shape, where)
        layers.append(
            NetxLayer(
                i,
                "dense",
                shape,
                out_shape,
                _read_neuron(group, where, DEFAULT_DENSE_NEURON),
                weight=weight,
                bias=_read_bias(group, out_shape, where),
                delay=delay,
                flatten_before=flatten_next,
            )
        )
        flatten_next = False
        shape = out_shape

    if not layers:
        raise NetxFormatError(f"{path}: the network has no layer with neurons")
    assert net_input is not None
    return NetxNetwork(path=path, input_shape=net_input, layers=layers, input_from_layer=from_layer)


def _count(totals: dict[str, int], what: str, n: int, where: str) -> None:
    limit = MAX_NETWORK_NEURONS if what == "neurons" else MAX_NETWORK_WEIGHTS
    totals[what] += int(n)
    if totals[what] > limit:
        raise NetxFormatError(
            f"{where}: the network reaches {totals[what]} {what} here, more than the limit of "
            f"{limit} for a whole network"
        )


def _check_conv_geometry(group: Any, in_shape: tuple[int, int, int], where: str) -> None:
    """Kernel, stride, padding and dilation within limits, from the declared weight shape and
    the small parameter datasets, before the weights are read or any output is sized."""
    wshape = tuple(int(d) for d in _dataset(group, "weight", where, MAX_LAYER_WEIGHTS).shape)
    if len(wshape) not in (4, 5):
        return  # the caller reports the wrong rank with the weights it read
    kh, kw = wshape[2], wshape[3]
    for name, value, limit in (("kernel height", kh, MAX_KERNEL), ("kernel width", kw, MAX_KERNEL)):
        if not 1 <= value <= limit:
            raise NetxFormatError(f"{where}: {name} {value} is outside 1..{limit}")
    stride = _pair(group, "stride", where, 1)
    padding = _pair(group, "padding", where, 0)
    dilation = _pair(group, "dilation", where, 1)
    for axis, k, s, p, d in (
        ("h", kh, stride[0], padding[0], dilation[0]),
        ("w", kw, stride[1], padding[1], dilation[1]),
    ):
        if not 1 <= s <= MAX_STRIDE:
            raise NetxFormatError(f"{where}: stride ({axis}) {s} is outside 1..{MAX_STRIDE}")
        if not 1 <= d <= MAX_DILATION:
            raise NetxFormatError(f"{where}: dilation ({axis}) {d} is outside 1..{MAX_DILATION}")
        extent = d * (k - 1) + 1
        # Padding beyond the kernel's reach only adds outputs that see nothing but zeros.
        if not 0 <= p <= extent:
            raise NetxFormatError(
                f"{where}: padding ({axis}) {p} is outside 0..{extent} (the kernel's extent: "
                f"kernel {k}, dilation {d})"
            )


def _dense_delay(raw: npt.NDArray[Any], wshape: tuple[int, ...], where: str) -> npt.NDArray[Any]:
    """Expand a dense layer's delays to an (out, in) matrix the way netx does."""
    delay = np.asarray(raw)
    if not np.all(np.isfinite(delay)) or (delay.size and delay.min() < 0):
        raise NetxFormatError(f"{where}: delays must be finite and not negative")
    if delay.size and delay.max() > MAX_DELAY:
        warnings.warn(
            f"{where}: max delay {delay.max()} clamped to {MAX_DELAY} as netx does", stacklevel=4
        )
        delay = np.clip(delay, 0, MAX_DELAY)
    n_out, n_in = wshape
    if delay.ndim == 0:
        full = np.full((n_out, n_in), delay.reshape(()))
    elif delay.ndim == 1 and delay.size == n_out:  # axonal delay of each output neuron
        full = np.repeat(delay.reshape(-1, 1), n_in, axis=1)
    elif delay.ndim == 1 and delay.size == n_in:  # delay of each input
        full = np.repeat(delay.reshape(1, -1), n_out, axis=0)
    elif delay.shape == (n_out, n_in):
        full = delay
    else:
        raise NetxFormatError(
            f"{where}: delay of shape {list(delay.shape)} is incompatible with weight of shape "
            f"{[n_out, n_in]}"
        )
    return full.astype(int)
