"""Native Loihi-exact runtime: against slayer's own forward pass, lava's own weight arithmetic,
its streaming form, and bad input. (Bit-exactness against Lava's fixed_pt simulation itself is in
test_lava_backend.py.)"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hsnn_perception.core.snn.loihi import Lif
from hsnn_perception.core.snn.netx import read_netx
from hsnn_perception.core.snn.runtime import (
    SnnConfigError,
    SnnInputError,
    SnnRuntime,
    load_snn,
    netx_dense_weights,
    numba_available,
)

from .snn_fixtures import (
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

IN_SHAPE = (2, 8, 8)
needs_numba = pytest.mark.skipif(not numba_available(), reason="numba not installed")
# Every way the runtime can run a window: (compute, engine, synapses, dense_above). The
# event-driven kernels alone, the whole-window conv/matmul (each library and neuron engine), and
# the mix where busy steps take the conv/matmul (dense_above 0: every step with any input does).
MODES = [
    pytest.param("numpy", "numba", "events", None, marks=needs_numba, id="events"),
    pytest.param("numpy", "numba", "auto", 0.0, marks=needs_numba, id="auto-all-dense-numpy"),
    pytest.param("torch", "numba", "auto", 0.0, marks=needs_numba, id="auto-all-dense-torch"),
    pytest.param("numpy", "numba", "auto", 0.3, marks=needs_numba, id="auto-mixed"),
    pytest.param("torch", "numba", "dense", None, marks=needs_numba, id="dense-torch-numba"),
    pytest.param("numpy", "numba", "dense", None, marks=needs_numba, id="dense-numpy-numba"),
    pytest.param("torch", "numpy", "dense", None, id="dense-torch-numpy"),
    pytest.param("numpy", "numpy", "dense", None, id="dense-numpy-numpy"),
]


@pytest.fixture(scope="module")
def slayer_cases(
    tmp_path_factory: pytest.TempPathFactory,
) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """(file, input, slayer output) for conv+dense nets with every neuron set, with and without
    dense delays, plus a dense-dense net."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("slayer")
    cases = []
    for k, neuron in enumerate(NEURON_SETS):
        for delay in (False, True):
            blocks = conv_dense_blocks(10 * k + delay, neuron, IN_SHAPE, delay=delay)
            x = random_spikes(rng, (3, 14, *IN_SHAPE))
            y = slayer_forward(blocks, x)  # the forward pass also fixes the blocks' shapes
            cases.append((export_blocks(root / f"n{k}{int(delay)}.net", blocks), x, y))
    blocks = dense_blocks(5, NEURON_SETS[3])
    x = random_spikes(rng, (2, 12, 12, 1, 1), 0.4)
    y = slayer_forward(blocks, x)
    cases.append((export_blocks(root / "dd.net", blocks), x, y))
    return cases


@pytest.mark.parametrize(("compute", "engine", "synapses", "dense_above"), MODES)
def test_equals_slayer_forward(
    slayer_cases: list, compute: str, engine: str, synapses: str, dense_above: float | None
) -> None:
    total = 0
    for path, x, y in slayer_cases:
        net = read_netx(path, x.shape[2:])
        rt = SnnRuntime(net, compute, engine, synapses, dense_above)
        assert (rt.compute, rt.engine, rt.synapses) == (compute, engine, synapses)
        out = rt.run(x)
        np.testing.assert_array_equal(out, y.reshape(out.shape), err_msg=str(path))
        total += int(out.sum())
    assert total > 100  # the networks do spike; equality of silence would prove nothing


def test_torch_and_numpy_agree_on_grouped_dilated_conv(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    w = rng.integers(-60, 60, (6, 2, 3, 3))
    spec = conv_spec(w, (6, 4, 4), stride=2, padding=2, groups=2, neuron=cuba(300, 200, 20))
    spec["dilation"] = np.array([2, 2])
    path = write_net(tmp_path / "g.net", [spec])
    x = random_spikes(rng, (2, 10, 4, 8, 8), 0.5)
    a = load_snn(path, "native-torch", input_shape=(4, 8, 8)).run(x)
    b = load_snn(path, "native-numpy", input_shape=(4, 8, 8)).run(x)
    np.testing.assert_array_equal(a, b)
    assert a.sum() > 0


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
@settings(max_examples=60, deadline=None)
@given(
    keeps=st.tuples(
        st.sampled_from([0, 1, 2048, 3072, 4095, 4096]) | st.integers(0, 4096),
        st.sampled_from([0, 1, 128, 4095, 4096]) | st.integers(0, 4096),
    ),
    vth=st.sampled_from([0, 1, 1 << 17]) | st.integers(0, 1 << 17),
    bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_compiled_lif_equals_numpy_step(
    keeps: tuple[int, int], vth: int, bias: bool, seed: int
) -> None:
    """The numba window kernel against the numpy step at every corner of the arithmetic: any
    int32 state and current (int32 wrap of ``a << 6``, the single 24-bit current wrap, int32 wrap
    of the voltage sum, saturation), decays 0..4096, int16 bias wrap, zero and huge thresholds,
    and the latency shift (step t reads row t - shift)."""
    rng = np.random.default_rng(seed)
    n, b, t, shift = 64, 2, 6, int(rng.integers(0, 3))
    i32 = np.iinfo(np.int32)

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        # a mix of full-range, near-24-bit, small and exact boundary values (a current of
        # exactly -2**23 needs a = -2**17 with a zero decayed state), so every branch is taken
        full = rng.integers(i32.min, i32.max, shape, endpoint=True)
        near = rng.integers(-(1 << 24), 1 << 24, shape)
        small = rng.integers(-300, 300, shape)
        edges = [0, -1, 1 << 17, -(1 << 17), (1 << 23) - 1, 1 << 23, -(1 << 23), i32.min, i32.max]
        edge = rng.choice(np.array(edges, np.int64), shape)
        pick = rng.integers(0, 4, shape)
        return np.choose(pick, [full, near, small, edge]).astype(np.int32)

    neuron = SimpleNamespace(i_decay=4096 - keeps[0], v_decay=4096 - keeps[1], vth_mant=vth)
    layer = SimpleNamespace(
        neuron=neuron, num_neurons=n, bias=rng.integers(-70000, 70000, n) if bias else None
    )
    lif = Lif(layer)  # type: ignore[arg-type]
    a_in = draw((t, b, n))
    u0, v0 = draw((b, n)), draw((b, n))
    u, v = u0.copy(), v0.copy()
    out = np.empty((t, b, n), np.uint8)
    counts = lif.window(a_in, shift, u, v, out)
    u_ref, v_ref = u0.copy(), v0.copy()
    for step in range(t):
        a = a_in[step - shift] if step >= shift else np.zeros((b, n), np.int32)
        spikes = lif.step(u_ref, v_ref, a)
        np.testing.assert_array_equal(out[step], spikes.astype(np.uint8), err_msg=f"t={step}")
        np.testing.assert_array_equal(counts[step], spikes.sum(axis=1))
    np.testing.assert_array_equal(u, u_ref)
    np.testing.assert_array_equal(v, v_ref)


@pytest.mark.filterwarnings("ignore:divide by zero")  # netx's 127 / max_weight when max is 0
@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.int64,
        st.tuples(st.integers(1, 6), st.integers(1, 6)),
        elements=st.integers(-300, 300),
    )
)
def test_dense_weights_match_netx_and_lava(weight: np.ndarray) -> None:
    """Our copy of the weight pipeline equals netx's optimize_weight_bits followed by Lava's
    clip_weights / truncate_weights (what PyDenseModelBitAcc does on its first step)."""
    from hsnn_perception.core.snn.lava_compat import import_netx

    import_netx()
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    if not weight.any():
        return  # netx itself fails on an all-zero matrix
    w, bits, exp, _ = optimize_weight_bits(weight.copy())
    mode = determine_sign_mode(w)
    want = truncate_weights(clip_weights(w, mode, num_bits=8), mode, bits)
    got, got_exp = netx_dense_weights(weight)
    np.testing.assert_array_equal(got, want)
    assert got_exp == exp


def test_latency_is_one_step_per_synaptic_layer(tmp_path: Path) -> None:
    """An input at step t reaches a 2-synapse network's output at t + 2 at the earliest."""
    rng = np.random.default_rng(4)
    path = write_net(
        tmp_path / "l.net",
        [
            dense_spec(np.full((4, 6), 200), neuron=cuba(4096, 4096, 0)),
            dense_spec(np.full((3, 4), 200), neuron=cuba(4096, 4096, 0)),
        ],
    )
    rt = load_snn(path)
    assert rt.latency == 2
    x = np.zeros((1, 8, 6, 1, 1), np.uint8)
    x[0, 3, rng.integers(0, 6)] = 1
    out = rt.run(x)[0, :, :, 0, 0]
    assert out[:5].sum() == 0 and out[5].all() and out[6:].sum() == 0


def test_op_counts(tmp_path: Path) -> None:
    """Synaptic ops = input spikes x fan-out, brute-forced here from the kernel geometry."""
    w = np.ones((3, 1, 3, 3))
    path = write_net(
        tmp_path / "c.net",
        [
            conv_spec(w, (3, 3, 3), stride=1, padding=1, neuron=cuba(4096, 4096, 1000)),
            {"type": "flatten", "shape": np.array([27, 1, 1])},
            dense_spec(np.ones((2, 27)), neuron=cuba(4096, 4096, 1000)),
        ],
    )
    rt = load_snn(path, input_shape=(1, 3, 3))
    rng = np.random.default_rng(5)
    x = random_spikes(rng, (4, 1, 3, 3), 0.5)

    def fanout(y: int, xx: int) -> int:  # outputs whose 3x3 window (padding 1) covers (y, xx)
        return (
            sum(1 for oy in range(3) for ox in range(3) if abs(oy - y) <= 1 and abs(ox - xx) <= 1)
            * 3
        )

    out, counts = rt.run_window(x)
    want_conv = sum(fanout(y, xx) for t, _, y, xx in zip(*np.nonzero(x), strict=True))
    assert counts.per_layer[0]["synaptic_ops"] == want_conv
    assert counts.per_layer[1]["synaptic_ops"] == 0  # threshold 1000 << 6: the conv never spikes
    assert counts.neuron_updates == 4 * (27 + 2)
    assert counts.spikes == 0 and counts.timesteps == 4
    both = counts + counts
    assert both.synaptic_ops == 2 * want_conv and both.per_layer[0]["neuron_updates"] == 4 * 54
    assert sum([counts, counts]) == both


def test_bias_int16_wrap_and_saturation(tmp_path: Path) -> None:
    """A bias beyond int16 wraps like Lava's int16 bias_mant Var; voltage saturates at 2**23-1."""
    path = write_net(
        tmp_path / "b.net",
        # threshold (1 << 17) << 6 = 2**23 is above the largest voltage: it never spikes
        [dict(dense_spec(np.ones((3, 2)), neuron=cuba(0, 0, 1 << 17)), bias=[70000, 0, -4000])],
    )
    rt = load_snn(path)
    lif = rt._lif[0]
    assert list(lif.bias) == [(70000 - 65536) << 6, 0, -4000 << 6]
    u, v = np.zeros((1, 3), np.int32), np.zeros((1, 3), np.int32)
    for _ in range(61):  # vDecay 0: the voltage integrates the bias until it saturates
        assert not lif.step(u, v, np.zeros((1, 3), np.int32)).any()
    assert v[0, 0] == (1 << 23) - 1
    assert v[0, 2] == -(1 << 23) + 1
    _, counts = rt.run_window(np.zeros((61, 2, 1, 1), np.uint8))
    assert counts.spikes == 0 and counts.neuron_updates == 61 * 3


# ---- event-driven against dense -----------------------------------------------------------------


def _random_net(draw: st.DrawFn, path: Path) -> tuple[Path, tuple[int, int, int]]:
    """A conv (any kernel, stride, padding, dilation, groups) -> flatten -> dense (optional
    delays) network, optionally behind an input layer with a neuron, with weights at one of the
    arithmetic's corners: small, conv sums beyond 24 bits (the current wrap), beyond 31 bits
    (int64 sums), dense weights spanning 0..255 (weight exponent 0: the current is the sum)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    groups = draw(st.sampled_from([1, 2]))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 3))
    h, w = draw(st.integers(3, 9)), draw(st.integers(3, 9))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    # netx refuses padding beyond the kernel's extent
    ph, pw = draw(st.integers(0, dh * (kh - 1) + 1)), draw(st.integers(0, dw * (kw - 1) + 1))
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    assume(h_out >= 1 and w_out >= 1)
    scale = draw(st.sampled_from(["small", "wrap24", "int64", "exc255"]))
    limit = {"small": 60, "wrap24": 1 << 20, "int64": 1 << 28, "exc255": 60}[scale]
    conv = conv_spec(
        rng.integers(-limit, limit, (c_out, c_in // groups, kh, kw)),
        (c_out, h_out, w_out),
        neuron=cuba(*draw(st.sampled_from([(1024, 128, 8), (0, 4096, 30), (4096, 0, 3)]))),
        groups=groups,
    )
    conv.update(stride=np.array([sh, sw]), padding=np.array([ph, pw]), dilation=np.array([dh, dw]))
    if c_out > 1 and draw(st.booleans()):  # netx reads a one-element bias as a scalar one
        conv["bias"] = rng.integers(-200, 200, c_out)
    n_flat = c_out * h_out * w_out
    n_dense = draw(st.integers(1, 6))
    if scale == "exc255":
        dense_w = rng.integers(0, 256, (n_dense, n_flat))
        dense_w.flat[0] = 255
    else:
        dense_w = rng.integers(-120, 120, (n_dense, n_flat))
    dense = dense_spec(dense_w, neuron=cuba(2048, 256, 4))
    if draw(st.booleans()):
        dense["delay"] = rng.integers(0, 4, n_dense)
    layers = [conv, {"type": "flatten", "shape": np.array([n_flat, 1, 1])}, dense]
    if draw(st.booleans()):
        layers.insert(0, {"type": "input", "shape": np.array([c_in, h, w]), **cuba(2048, 0, 0)})
    return write_net(path, layers), (c_in, h, w)


@needs_numba
@settings(max_examples=60, deadline=None)
@given(data=st.data(), rate=st.sampled_from([0.01, 0.1, 0.5]), t=st.integers(1, 7))
def test_event_driven_equals_dense(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, rate: float, t: int
) -> None:
    """The event-driven kernels (every step, and mixed with the dense sums for busy steps) give
    the dense path's spikes and counts, per sample, step and layer, at every conv geometry and
    arithmetic corner (the taps tables, HWC layouts, delay rings, wraps, int64 sums)."""
    path, shape = _random_net(data.draw, tmp_path_factory.mktemp("ev") / "n.net")
    net = read_netx(path, shape)
    x = random_spikes(np.random.default_rng(t), (2, t, *shape), rate)
    want, want_counts = SnnRuntime(net, "numpy", "numba", "dense").run_with_counts(x)
    for synapses, above in (("events", None), ("auto", 0.0), ("auto", 0.2)):
        rt = SnnRuntime(net, "numpy", "numba", synapses, above)
        got, counts = rt.run_with_counts(x)
        np.testing.assert_array_equal(got, want, err_msg=f"{synapses} {above}")
        np.testing.assert_array_equal(counts, want_counts, err_msg=f"{synapses} {above}")


@needs_numba
def test_event_driven_spikes_in_every_layer_and_matches_lava_arithmetic(tmp_path: Path) -> None:
    """One fixed network from the generator's corners (conv sums past 24 bits, delays, bias,
    input neuron) that does spike in every layer, so the equality above is not one of silence."""
    rng = np.random.default_rng(21)
    conv = conv_spec(rng.integers(-(1 << 18), 1 << 18, (4, 2, 3, 3)), (4, 4, 4), 2, 1)
    conv.update(neuron := cuba(1024, 128, 1 << 10), bias=rng.integers(-50, 50, 4))
    dense = dense_spec(rng.integers(-120, 120, (5, 64)), neuron=cuba(2048, 256, 4))
    dense["delay"] = np.array([0, 1, 2, 3, 1])
    path = write_net(
        tmp_path / "c.net",
        [
            {"type": "input", "shape": np.array([2, 8, 8]), **cuba(2048, 0, 0)},
            conv,
            {"type": "flatten", "shape": np.array([64, 1, 1])},
            dense,
        ],
    )
    net = read_netx(path)
    assert neuron and net.layers[1].kind == "conv"
    x = random_spikes(rng, (3, 10, 2, 8, 8), 0.3)
    want, want_counts = SnnRuntime(net, "numpy", "numpy", "dense").run_with_counts(x)
    got, counts = SnnRuntime(net, "numpy", "numba", "events").run_with_counts(x)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(counts, want_counts)
    assert (counts[..., 2].sum(axis=(0, 1)) > 0).all()  # every layer spikes
    assert counts[..., 0].sum() > 0


@needs_numba
def test_busy_steps_take_the_dense_sums(
    slayer_cases: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dense_above`` picks, per layer and step, the steps whose input is busier than it: those
    (and only those) go through the conv/matmul, and the result does not change."""
    from hsnn_perception.core.snn.synapse import DenseSynapse

    path, _, _ = slayer_cases[0]
    net = read_netx(path, IN_SHAPE)
    x = np.zeros((1, 9, *IN_SHAPE), np.uint8)
    rng = np.random.default_rng(2)
    x[0, 1:] = random_spikes(rng, (8, *IN_SHAPE), 0.05)
    x[0, 3] = random_spikes(rng, IN_SHAPE, 0.6)  # the one busy step of the network input
    x[0, 6] = 1
    frames: list[tuple[str, int]] = []
    raw_sums = DenseSynapse.raw_sums

    def spy(self: DenseSynapse, spikes: np.ndarray, **layout: bool) -> list:
        frames.append((self.layer.name, spikes.shape[0]))
        return raw_sums(self, spikes, **layout)

    monkeypatch.setattr(DenseSynapse, "raw_sums", spy)
    want = SnnRuntime(net, "numpy", "numba", "events").run_with_counts(x)
    assert frames == []
    got = SnnRuntime(net, "numpy", "numba", "auto", 0.5).run_with_counts(x)
    assert frames[0] == ("0:conv", 2)  # steps 3 and 6 of the input, not the others
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


# ---- bad input ----------------------------------------------------------------------------------


def test_bad_inputs(slayer_cases: list) -> None:
    path, x, _ = slayer_cases[0]
    rt = load_snn(path, input_shape=IN_SHAPE)
    with pytest.raises(SnnInputError, match=r"expected shape \(B, T, C, H, W\).*\[2, 8, 8\]"):
        rt.run(x[0])
    with pytest.raises(SnnInputError, match="got \\[3, 14, 2, 8, 9\\]"):
        rt.run(np.zeros((3, 14, 2, 8, 9), np.uint8))
    with pytest.raises(SnnInputError, match="binary"):
        rt.run(x * 2)
    for bad in (2, 255):  # one non-spike value among zeros: the event scan sees it too
        one = np.zeros_like(x)
        one[1, 5, 1, 7, 3] = bad
        with pytest.raises(SnnInputError, match="binary"):
            rt.run(one)
    with pytest.raises(SnnInputError, match="binary"):
        rt.run_window(x[0].astype(np.float32) * 0.5)
    with pytest.raises(SnnInputError, match="run_window input"):
        rt.run_window(x[0, 0])
    with pytest.raises(SnnInputError, match="not a spike array"):
        rt.run_window(np.full((2, *IN_SHAPE), "a"))
    with pytest.raises(SnnConfigError, match="unknown SNN backend"):
        load_snn(path, backend="gpu", input_shape=IN_SHAPE)
    with pytest.raises(SnnConfigError, match="engine must be"):
        load_snn(path, input_shape=IN_SHAPE, engine="gpu")
    net = read_netx(path, IN_SHAPE)
    with pytest.raises(SnnConfigError, match="synapses must be 'auto', 'events' or 'dense'"):
        SnnRuntime(net, synapses="sparse")
    with pytest.raises(SnnConfigError, match="needs the numba engine"):
        SnnRuntime(net, engine="numpy", synapses="events")
    with pytest.raises(SnnConfigError, match="dense_above must be within"):
        SnnRuntime(net, dense_above=1.5)


def test_run_window_matches_run(slayer_cases: list) -> None:
    path, x, y = slayer_cases[2]
    rt = load_snn(path, input_shape=IN_SHAPE)
    out, counts = rt.run_window(x[1].astype(bool))
    assert out.dtype == np.uint8 and out.shape == (14, *rt.output_shape)
    np.testing.assert_array_equal(out, y[1].reshape(out.shape))
    assert counts.spikes == sum(d["spikes"] for d in counts.per_layer)
    assert counts.per_layer[-1]["spikes"] == int(out.sum())
    want = "native (numba events, numpy dense steps)" if numba_available() else "native (numpy)"
    assert rt.backend_name == want
