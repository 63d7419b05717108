"""netx HDF5 reader: slayer exports read back as slayer wrote them; clear errors otherwise."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from core.snn.snn_fixtures import (
    NEURON_SETS,
    conv_dense_blocks,
    conv_spec,
    cuba,
    dense_blocks,
    dense_spec,
    export_blocks,
    random_spikes,
    slayer_forward,
    write_net,
)
from hsnn_perception.core.snn.netx import NetxFormatError, read_netx


@pytest.fixture(scope="module")
def slayer_net(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    blocks = conv_dense_blocks(3, NEURON_SETS[0], delay=True)
    slayer_forward(blocks, random_spikes(np.random.default_rng(0), (1, 4, 2, 8, 8)))
    path = export_blocks(tmp_path_factory.mktemp("netx") / "net.net", blocks)
    return path, blocks


def test_reads_slayer_export(slayer_net: tuple[Path, list]) -> None:
    path, blocks = slayer_net
    net = read_netx(path, input_shape=(2, 8, 8))
    assert [layer.kind for layer in net.layers] == ["conv", "dense"]
    conv, dense = net.layers
    assert conv.in_shape == (2, 8, 8) and conv.out_shape == (4, 4, 4)
    assert conv.stride == (2, 2) and conv.padding == (1, 1) and conv.groups == 1
    assert dense.in_shape == (4, 4, 4) and dense.out_shape == (5, 1, 1) and dense.flatten_before
    assert net.output_shape == (5, 1, 1) and net.num_synaptic_layers == 2
    with h5py.File(path) as h:
        np.testing.assert_array_equal(conv.weight, h["layer/0/weight"][()].astype(int))
        np.testing.assert_array_equal(dense.weight, h["layer/2/weight"][()].astype(int))
        assert conv.neuron.i_decay == int(h["layer/0/neuron/iDecay"][()])
        assert conv.neuron.v_decay == int(h["layer/0/neuron/vDecay"][()])
        assert conv.neuron.vth_mant == int(h["layer/0/neuron/vThMant"][()])
    # slayer's axonal delays (one per output neuron) become an (out, in) matrix, as in netx
    axonal = np.floor(blocks[2].delay.delay.detach().numpy().ravel()).astype(int)
    assert dense.delay.shape == (5, 64)
    np.testing.assert_array_equal(dense.delay, np.repeat(axonal[:, None], 64, axis=1))
    assert axonal.max() > 0


def test_dense_first_network_infers_input(tmp_path: Path) -> None:
    blocks = dense_blocks(1, NEURON_SETS[1])
    slayer_forward(blocks, random_spikes(np.random.default_rng(1), (1, 3, 12, 1, 1)))
    net = read_netx(export_blocks(tmp_path / "d.net", blocks))
    assert net.input_shape == (12, 1, 1)
    assert [layer.out_shape for layer in net.layers] == [(10, 1, 1), (4, 1, 1)]
    # a (C, H, W) input of the right size is accepted for a dense-first net (flattened C-order)
    assert read_netx(tmp_path / "d.net", input_shape=(3, 2, 2)).input_shape == (3, 2, 2)


def test_input_layer_gives_shape_and_bias_is_per_channel(tmp_path: Path) -> None:
    w = np.ones((3, 2, 3, 3))
    path = write_net(
        tmp_path / "n.net",
        [
            {"type": "input", "shape": np.array([2, 5, 5])},
            dict(conv_spec(w, (3, 3, 3)), bias=np.array([1.0, -2.0, 3.0])),
        ],
    )
    net = read_netx(path)
    assert net.input_shape == (2, 5, 5) and net.input_from_layer
    assert len(net.layers) == 1  # an input layer without neuron is only a shape
    np.testing.assert_array_equal(net.layers[0].bias, np.repeat([1, -2, 3], 9))


def test_default_neuron_for_dense_without_neuron(tmp_path: Path) -> None:
    spec = {"type": "dense", "shape": np.array([2]), "weight": np.ones((2, 3))}
    net = read_netx(write_net(tmp_path / "n.net", [spec]))
    p = net.layers[0].neuron
    assert (p.i_decay, p.v_decay, p.vth_mant) == (0, 4096, 1 << 17)  # netx's defaults


# ---- bad files ---------------------------------------------------------------------------------


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "junk.net"
    path.write_text("this is not HDF5")
    with pytest.raises(NetxFormatError, match="not a readable HDF5"):
        read_netx(path)


def test_missing_file_and_missing_layer_group(tmp_path: Path) -> None:
    with pytest.raises(NetxFormatError, match="no such file"):
        read_netx(tmp_path / "nope.net")
    with h5py.File(tmp_path / "empty.net", "w") as h:
        h.create_group("other")
    with pytest.raises(NetxFormatError, match="no 'layer' group"):
        read_netx(tmp_path / "empty.net")


def test_pool_layer_is_refused_with_layer_name(tmp_path: Path) -> None:
    path = write_net(
        tmp_path / "p.net",
        [
            {"type": "input", "shape": np.array([2, 8, 8])},
            {"type": "pool", "shape": np.array([2, 4, 4]), "weight": np.ones((2, 2, 2, 2))},
        ],
    )
    with pytest.raises(NetxFormatError, match=r"layer 1 \(pool\).*not supported"):
        read_netx(path)


def test_unknown_layer_type(tmp_path: Path) -> None:
    path = write_net(tmp_path / "u.net", [{"type": "wobble", "shape": np.array([3])}])
    with pytest.raises(NetxFormatError, match=r"layer 0 \(wobble\): unknown layer type"):
        read_netx(path)


def test_conv_needs_input_shape(tmp_path: Path) -> None:
    path = write_net(tmp_path / "c.net", [conv_spec(np.ones((2, 1, 3, 3)), (2, 4, 4))])
    with pytest.raises(NetxFormatError, match="input_shape"):
        read_netx(path)
    assert read_netx(path, input_shape=(1, 6, 6)).output_shape == (2, 4, 4)


def test_shapes_that_do_not_chain(tmp_path: Path) -> None:
    # dense expects 10 inputs but the conv gives 2*4*4 = 32
    path = write_net(
        tmp_path / "s.net",
        [
            conv_spec(np.ones((2, 1, 3, 3)), (2, 4, 4)),
            {"type": "flatten", "shape": np.array([32, 1, 1])},
            dense_spec(np.ones((3, 10))),
        ],
    )
    with pytest.raises(NetxFormatError, match=r"layer 2 \(dense\): weight expects 10 inputs"):
        read_netx(path, input_shape=(1, 6, 6))
    # stored conv shape disagrees with what the conv computes
    path = write_net(tmp_path / "s2.net", [conv_spec(np.ones((2, 1, 3, 3)), (2, 5, 5))])
    with pytest.raises(NetxFormatError, match=r"layer 0 \(conv\): stored shape \[2, 5, 5\]"):
        read_netx(path, input_shape=(1, 6, 6))
    # input channels do not match the kernel
    with pytest.raises(NetxFormatError, match="expects 1 input channels"):
        read_netx(tmp_path / "s2.net", input_shape=(3, 6, 6))


def test_dense_after_conv_needs_flatten(tmp_path: Path) -> None:
    path = write_net(
        tmp_path / "f.net",
        [conv_spec(np.ones((2, 1, 3, 3)), (2, 4, 4)), dense_spec(np.ones((3, 32)))],
    )
    with pytest.raises(NetxFormatError, match="needs a flatten layer"):
        read_netx(path, input_shape=(1, 6, 6))


def test_unsupported_neuron_and_per_channel_decay(tmp_path: Path) -> None:
    spec = dense_spec(np.ones((2, 3)))
    spec["neuron/type"] = "SDNN"
    with pytest.raises(NetxFormatError, match=r"layer 0 \(dense\): neuron type 'SDNN'"):
        read_netx(write_net(tmp_path / "a.net", [spec]))
    spec = dense_spec(np.ones((2, 3)), neuron={**cuba(0, 0, 1), "neuron/iDecay": [1, 2]})
    with pytest.raises(NetxFormatError, match="iDecay' must be a scalar"):
        read_netx(write_net(tmp_path / "b.net", [spec]))


def test_layers_must_be_numbered(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "n.net", "w") as h:
        g = h.create_group("layer/first")
        g.create_dataset("type", (1,), "S10", [b"dense"])
    with pytest.raises(NetxFormatError, match="named 0..0"):
        read_netx(tmp_path / "n.net")


def test_bad_delay_shape(tmp_path: Path) -> None:
    spec = dict(dense_spec(np.ones((2, 3))), delay=np.array([1, 2, 3, 4]))
    with pytest.raises(NetxFormatError, match="delay of shape \\[4\\]"):
        read_netx(write_net(tmp_path / "d.net", [spec]))
