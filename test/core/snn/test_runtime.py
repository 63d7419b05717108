"""Native Loihi-exact runtime: against slayer's own forward pass, lava's own weight arithmetic,
its streaming form, and bad input. (Bit-exactness against Lava's fixed_pt simulation itself is in
test_lava_backend.py.)"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hsnn_perception.core.snn.netx import read_netx
from hsnn_perception.core.snn.runtime import (
    SnnConfigError,
    SnnInputError,
    SnnRuntime,
    _Lif,
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
# Neuron engines: the numba whole-window kernel (when numba is installed) and the numpy step.
ENGINES = [
    pytest.param(
        "numba", marks=pytest.mark.skipif(not numba_available(), reason="numba not installed")
    ),
    "numpy",
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


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("compute", ["torch", "numpy"])
def test_equals_slayer_forward(slayer_cases: list, compute: str, engine: str) -> None:
    total = 0
    for path, x, y in slayer_cases:
        rt = SnnRuntime(read_netx(path, x.shape[2:]), compute=compute, engine=engine)
        assert rt.engine == engine
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
    lif = _Lif(layer)  # type: ignore[arg-type]
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


def test_run_window_matches_run(slayer_cases: list) -> None:
    path, x, y = slayer_cases[2]
    rt = load_snn(path, input_shape=IN_SHAPE)
    out, counts = rt.run_window(x[1].astype(bool))
    assert out.dtype == np.uint8 and out.shape == (14, *rt.output_shape)
    np.testing.assert_array_equal(out, y[1].reshape(out.shape))
    assert counts.spikes == sum(d["spikes"] for d in counts.per_layer)
    assert counts.per_layer[-1]["spikes"] == int(out.sum())
    want = "native (torch+numba)" if numba_available() else "native (torch)"
    assert rt.backend_name == want
