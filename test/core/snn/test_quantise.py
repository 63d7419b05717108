"""Loihi's fixed-point limits, the netx writer and the threshold calibration shared by ANN-to-SNN
conversion and NIR import."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hsnn_perception.core.snn.netx import read_netx
from hsnn_perception.core.snn.quantise import WEIGHT_MAX, even_weights, rate_gain, write_netx
from hsnn_perception.core.snn.runtime import load_snn

IF = {"neuron/type": "CUBA", "neuron/iDecay": 4096, "neuron/vDecay": 0, "neuron/refDelay": 1}


def dense_if(weight: np.ndarray, vth: int) -> list[tuple[str, dict]]:
    return [
        ("input", {"shape": np.array([weight.shape[1], 1, 1])}),
        (
            "dense",
            {
                "shape": np.array([weight.shape[0]]),
                "inFeatures": weight.shape[1],
                "outFeatures": weight.shape[0],
                "weight": weight,
                "bias": np.zeros(weight.shape[0], dtype=np.int64),
                **IF,
                "neuron/vThMant": vth,
                "neuron/gradedSpike": False,
            },
        ),
    ]


@given(arrays(np.float64, st.integers(1, 50), elements=st.floats(-1e4, 1e4)))
def test_even_weights_are_loihis_8_bit_mixed_sign_values(values):
    w = even_weights(values)
    assert np.all(w % 2 == 0) and np.all(np.abs(w) <= WEIGHT_MAX)
    inside = np.abs(values) <= WEIGHT_MAX - 1
    assert np.all(np.abs(w[inside] - values[inside]) <= 1)  # nearest even value


def test_written_netx_reads_back_with_its_weights_and_neurons(tmp_path):
    weight = np.array([[2, -4, 6], [254, 0, -254]])
    path = tmp_path / "if.net"
    write_netx(path, dense_if(weight, vth=37))
    net = read_netx(path)
    layer = net.layers[-1]
    assert np.array_equal(np.asarray(layer.weight).reshape(weight.shape), weight)
    assert (layer.neuron.i_decay, layer.neuron.v_decay, layer.neuron.vth_mant) == (4096, 0, 37)


def test_rate_gain_is_measured_over_expected_rate_with_the_real_runtime(tmp_path):
    weight = np.array([[60, 60, 60, 60], [200, -20, 0, 0]])
    specs = dense_if(weight, vth=100)
    spikes = (np.random.default_rng(0).random((3, 16, 4, 1, 1)) < 0.5).astype(np.uint8)
    write_netx(tmp_path / "if.net", specs)
    out, _ = load_snn(tmp_path / "if.net").run_with_counts(spikes)
    measured = out.reshape(out.shape[0], out.shape[1], -1).sum(axis=1) / 15
    assert measured.sum() > 0
    assert rate_gain(specs, spikes, measured, 15) == 1.0
    assert rate_gain(specs, spikes, 2 * measured, 15) == 0.5
    assert rate_gain(specs, spikes, np.zeros_like(measured), 15) == 0.0
