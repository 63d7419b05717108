"""Bit-exactness of the native runtime against Lava's own fixed_pt simulation of the same netx
file (and against slayer where slayer models the same thing), plus the Lava backend's interface.

Lava runs every process in worker processes; each LavaSnn is closed by a context manager."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hsnn_perception.core.snn.lava import (
    HW_MISSING,
    LavaBackendError,
    LavaSnn,
    lava_loihi_installed,
)
from hsnn_perception.core.snn.netx import read_netx
from hsnn_perception.core.snn.runtime import SnnInputError, SnnRuntime, load_snn, numba_available

from .snn_fixtures import (
    NEURON_SETS,
    add_bias,
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

IN_SHAPE = (2, 8, 8)
T = 12


# The native runtime's ways of running a window (compute, synapses, dense_above): the
# event-driven kernels, the mix where steps busier than 20 % take the conv/matmul, every step
# through the conv/matmul, and the whole-window dense path; each must give Lava's spikes and counts.
NATIVE_MODES = [
    ("numpy", "events", None),
    ("numpy", "auto", 0.2),
    ("numpy", "auto", 0.0),
    ("numpy", "dense", None),
]


def _natives(path: Path, input_shape: tuple[int, ...] | None) -> list[SnnRuntime]:
    net = read_netx(path, input_shape)
    if not numba_available():
        return [SnnRuntime(net, synapses="dense")]
    return [SnnRuntime(net, c, synapses=s, dense_above=a) for c, s, a in NATIVE_MODES]


def _compare(path: Path, x: np.ndarray, input_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Run ``x`` (B, T, ...) through Lava and every native mode; assert equal outputs and
    counts for every sample; return Lava's output."""
    natives = _natives(path, input_shape)
    native = natives[0]
    want, counts = native.run_with_counts(x)
    for other in natives[1:]:
        got_other, counts_other = other.run_with_counts(x)
        np.testing.assert_array_equal(got_other, want, err_msg=other.backend_name)
        np.testing.assert_array_equal(counts_other, counts, err_msg=other.backend_name)
    with load_snn(path, backend="lava", input_shape=input_shape) as lava:
        assert lava.backend_name == "lava loihi2 sim fixed_pt"
        outs = []
        for b, sample in enumerate(x):  # one compiled network, reset between windows
            out, lava_counts = lava.run_window(sample)
            assert lava_counts == native.run_window(sample)[1]
            assert lava_counts.per_layer[0]["synaptic_ops"] == counts[b, :, 0, 0].sum()
            outs.append(out)
    got = np.stack(outs)
    np.testing.assert_array_equal(got, want, err_msg=str(path))
    return got


@pytest.mark.parametrize(("conv_set", "dense_set", "delay"), [(0, 1, False), (2, 3, True)])
def test_slayer_conv_dense_lava_native_slayer(
    tmp_path: Path, conv_set: int, dense_set: int, delay: bool
) -> None:
    """Conv + flatten + dense from slayer, without and with dense delays: Lava == native ==
    slayer at every timestep. Each Lava network costs seconds, so the four neuron parameter sets
    are spread over two networks (one per layer; the LIF arithmetic is the same process in both
    layers), and every set goes through Lava; the native runtime is checked against slayer with
    every set in every layer, with and without delays, in test_snn_runtime.py."""
    rng = np.random.default_rng(100 + conv_set)
    blocks = conv_dense_blocks(
        20 + conv_set,
        NEURON_SETS[conv_set],
        IN_SHAPE,
        delay=delay,
        dense_neuron=NEURON_SETS[dense_set],
    )
    x = random_spikes(rng, (2, T, *IN_SHAPE))
    y = slayer_forward(blocks, x)
    path = export_blocks(tmp_path / f"n{int(delay)}.net", blocks)
    got = _compare(path, x, IN_SHAPE)
    np.testing.assert_array_equal(got, y.reshape(got.shape))
    native = load_snn(path, input_shape=IN_SHAPE)
    _, counts = native.run_window(x[0])
    assert all(d["spikes"] > 0 for d in counts.per_layer)  # both layers' neurons are exercised


def test_slayer_net_with_bias_and_dense_chain(tmp_path: Path) -> None:
    """Biases (per conv channel and per dense neuron, as netx reads them) and a dense-first net
    with delays: Lava == native."""
    rng = np.random.default_rng(7)
    blocks = conv_dense_blocks(3, NEURON_SETS[0], IN_SHAPE)
    x = random_spikes(rng, (2, T, *IN_SHAPE))
    slayer_forward(blocks, x)
    path = export_blocks(tmp_path / "b.net", blocks)
    add_bias(path, 0, np.array([40, -30, 0, 25]))
    add_bias(path, 2, rng.integers(-20, 30, 5))
    assert _compare(path, x, IN_SHAPE).sum() > 0

    blocks = dense_blocks(9, NEURON_SETS[1])
    x = random_spikes(rng, (2, T, 12, 1, 1), 0.4)
    slayer_forward(blocks, x)
    assert _compare(export_blocks(tmp_path / "d.net", blocks), x).sum() > 0


def test_extreme_values_input_neuron_groups(tmp_path: Path) -> None:
    """Hand-written nets reaching the corners of the arithmetic: conv currents beyond 24 bits
    (current wrap), voltage saturation, dense weights that netx must clip (> 254), odd
    excitatory / purely inhibitory weights (truncation), int16 bias wrap, an input layer with a
    neuron, grouped + dilated strided conv."""
    rng = np.random.default_rng(11)
    w_big = rng.integers(-300000, 300000, (3, 2, 3, 3))
    wrap = write_net(
        tmp_path / "wrap.net",
        [
            {"type": "input", "shape": np.array([2, 6, 6]), **cuba(2048, 1024, 3)},
            dict(conv_spec(w_big, (3, 4, 4), neuron=cuba(100, 50, 200)), bias=[5000, -3000, 40]),
            {"type": "flatten", "shape": np.array([48, 1, 1])},
            dense_spec(rng.integers(-400, 400, (6, 48)), neuron=cuba(0, 4096, 30)),
        ],
    )
    signs = write_net(
        tmp_path / "signs.net",
        [
            dict(
                dense_spec(rng.integers(0, 255, (7, 10)) | 1, neuron=cuba(2000, 300, 300)),
                bias=rng.integers(-40000, 40000, 7),
            ),
            dict(dense_spec(-rng.integers(1, 200, (5, 7)), neuron=cuba(10, 10, 1)), bias=[900] * 5),
        ],
    )
    grouped = conv_spec(rng.integers(-9, 9, (4, 1, 3, 3)), (4, 3, 3), 2, 1, cuba(512, 256, 3), 2)
    grouped["dilation"] = np.array([2, 2])
    groups = write_net(
        tmp_path / "groups.net",
        [
            grouped,
            {"type": "flatten", "shape": np.array([36, 1, 1])},
            dense_spec(rng.integers(-7, 11, (3, 36)), neuron=cuba(0, 0, 5)),
        ],
    )
    for path, shape in ((wrap, None), (signs, None), (groups, (2, 8, 8))):
        native = load_snn(path, input_shape=shape)
        x = random_spikes(rng, (2, 15, *native.input_shape), 0.4)
        _, counts = native.run_window(x[0])
        assert all(d["spikes"] > 0 for d in counts.per_layer), path
        _compare(path, x, shape)


def test_window_length_change_and_close(tmp_path: Path) -> None:
    blocks = dense_blocks(2, NEURON_SETS[3])
    rng = np.random.default_rng(2)
    x = random_spikes(rng, (1, 9, 12, 1, 1), 0.4)
    slayer_forward(blocks, x)
    path = export_blocks(tmp_path / "d.net", blocks)
    native = load_snn(path)
    lava = LavaSnn(path)
    try:
        assert lava.input_shape == (12, 1, 1) and lava.output_shape == (4, 1, 1)
        np.testing.assert_array_equal(lava.run(x), native.run(x))
        short = x[:, :5]
        np.testing.assert_array_equal(lava.run(short), native.run(short))  # rebuilt for T=5
        with pytest.raises(SnnInputError, match="run_window input"):
            lava.run_window(np.zeros((5, 3, 1, 1), np.uint8))
    finally:
        lava.close()
    assert lava._state["net"] is None
    lava.close()  # closing twice is harmless


def test_hardware_backend_without_lava_loihi(tmp_path: Path) -> None:
    if lava_loihi_installed():
        pytest.skip("lava-loihi is installed here")
    path = write_net(tmp_path / "d.net", [dense_spec(np.ones((2, 3)))])
    with pytest.raises(LavaBackendError, match="lava-loihi extension") as info:
        load_snn(path, backend="lava-hw")
    assert str(info.value) == HW_MISSING


def test_energy_probe_on_the_simulation_says_there_is_no_profiler(tmp_path: Path) -> None:
    """Asked for on the CPU simulation, the real Lava profiler has nothing to measure with: the
    window still runs, no measurement, and the reason is kept for the energy report."""
    blocks = dense_blocks(4, NEURON_SETS[0])
    x = random_spikes(np.random.default_rng(4), (1, 6, 12, 1, 1), 0.4)
    slayer_forward(blocks, x)
    path = export_blocks(tmp_path / "d.net", blocks)
    with load_snn(path, backend="lava", energy_probe=True) as lava:
        out, _ = lava.run_window(x[0])
        np.testing.assert_array_equal(out, load_snn(path).run_window(x[0])[0])
        assert lava.last_measurement is None
        assert "no energy profiler for Loihi2SimCfg" in lava.probe_error
    with load_snn(path, backend="lava") as lava:  # off by default off hardware
        lava.run_window(x[0])
        assert lava.energy_probe is False and lava.probe_error is None


def test_energy_probe_is_attached_before_the_first_run_and_read_after_each(tmp_path: Path) -> None:
    """The wiring of LavaSnn to its probe, with the board profiler (lava-loihi) isolated: one
    probe per compiled network, for the window's steps, created before Lava compiles; one
    reading per window."""
    from hsnn_perception.core.energy.models import LoihiMeasurement
    from hsnn_perception.core.snn.loihi_profiler import LoihiProfilerError

    events: list[str] = []

    class Probe:
        def __init__(self, run_cfg, steps):
            assert type(run_cfg).__name__ == "Loihi2SimCfg"
            self.steps, self.reads = steps, 0
            events.append(f"attach {steps}")

        def read(self):
            self.reads += 1
            events.append("read")
            if self.reads == 2:
                raise LoihiProfilerError("board lost")
            e = 1e-6 * self.reads
            return LoihiMeasurement(e, e, 0.0, 1.0, e, {}, self.steps, "board")

    blocks = dense_blocks(5, NEURON_SETS[1])
    x = random_spikes(np.random.default_rng(5), (3, 7, 12, 1, 1), 0.4)
    slayer_forward(blocks, x)
    path = export_blocks(tmp_path / "d.net", blocks)
    lava = LavaSnn(path, energy_probe=True, probe_factory=Probe)
    try:
        lava.run_window(x[0])
        assert events == ["attach 7", "read"] and lava.last_measurement.energy_j == 1e-6
        lava.run_window(x[1])
        assert lava.last_measurement is None and lava.probe_error == "board lost"
        lava.run_window(x[2])
        assert lava.last_measurement.energy_j == 3e-6 and lava.probe_error is None
        assert events == ["attach 7", "read", "read", "read"]
        lava.run_window(x[0, :4])  # another window length: recompiled, a new probe
        assert events[-2:] == ["attach 4", "read"]
    finally:
        lava.close()
