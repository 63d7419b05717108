"""NIR export and import (core/snn/nir/): the Loihi parameters as NIR writes them, the
round trip export -> import -> identical spikes in the native runtime, the real-valued
reference simulation, quantisation of graphs that are not in fixed point, and every construct
the importer refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

nir = pytest.importorskip(
    "nir", reason="nir is not installed (pip install -r requirements-nir.txt)"
)

from hsnn_perception.core.hybrid.bundle import ModelBundle  # noqa: E402
from hsnn_perception.core.snn.netx import read_netx  # noqa: E402
from hsnn_perception.core.snn.nir.bundle import import_graph  # noqa: E402
from hsnn_perception.core.snn.nir.export import export_snn, netx_layers  # noqa: E402
from hsnn_perception.core.snn.nir.fixed_point import layer_spikes, layers_to_netx  # noqa: E402
from hsnn_perception.core.snn.nir.layers import DEFAULT_DT, SOURCE, NirError, SpikingLayer, simulate  # noqa: E402
from hsnn_perception.core.snn.nir.parse import nir_layers, read_graph  # noqa: E402
from hsnn_perception.core.snn.quantise import write_netx  # noqa: E402

DT = DEFAULT_DT


def spikes(seed: int, shape: tuple[int, ...], rate: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < rate).astype(np.uint8)


def neuron(i_decay: int, v_decay: int, vth: int) -> dict:
    return {
        "neuron/type": "CUBA",
        "neuron/iDecay": i_decay,
        "neuron/vDecay": v_decay,
        "neuron/vThMant": vth,
        "neuron/refDelay": 1,
        "neuron/gradedSpike": False,
    }


def conv(weight: np.ndarray, out_shape: tuple, stride: int = 2, padding: int = 1, **extra) -> dict:
    return {
        "shape": np.array(out_shape),
        "inChannels": weight.shape[1],
        "outChannels": weight.shape[0],
        "kernelSize": np.array(weight.shape[2:]),
        "stride": np.array([stride, stride]),
        "padding": np.array([padding, padding]),
        "dilation": np.array([1, 1]),
        "groups": 1,
        "weight": weight,
        **extra,
    }


def dense(weight: np.ndarray, **extra) -> dict:
    return {
        "shape": np.array([weight.shape[0]]),
        "inFeatures": weight.shape[1],
        "outFeatures": weight.shape[0],
        "weight": weight,
        **extra,
    }


def mixed_network(path: Path) -> Path:
    """Input neuron -> conv (per-channel bias, non-leaky IF) -> flatten -> dense (bias, leaky
    CUBA): every mapping the exporter has (IF, CubaLIF, synapse bias, v_leak, Flatten)."""
    rng = np.random.default_rng(3)
    w1 = rng.integers(-40, 41, (4, 2, 3, 3))
    w2 = rng.integers(-90, 91, (6, 4 * 4 * 4))
    write_netx(
        path,
        [
            ("input", {"shape": np.array([2, 8, 8]), **neuron(4096, 0, 0)}),
            ("conv", conv(w1, (4, 4, 4), bias=np.array([3, -2, 0, 5]), **neuron(4096, 0, 60))),
            ("flatten", {"shape": np.array([64, 1, 1])}),
            ("dense", dense(w2, bias=np.arange(6) - 2, **neuron(1024, 256, 80))),
        ],
    )
    return path


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


def test_export_writes_the_loihi_parameters_of_the_shipped_model(default_bundle_dir, tmp_path):
    out = tmp_path / "default.nir"
    report = export_snn(default_bundle_dir / "snn.net", out)
    graph = nir.read(str(out))
    network = read_netx(default_bundle_dir / "snn.net")
    assert report.latency_steps == 2 and int(graph.metadata["loihi_latency_steps"]) == 2
    assert float(graph.metadata["dt"]) == DT
    assert sorted(graph.edges) == sorted(
        [("input", "conv1"), ("conv1", "lif1"), ("lif1", "conv2"), ("conv2", "lif2")]
        + [("lif2", "output")]
    )
    for layer in network.layers:
        tag = layer.name.split(":")[0]
        c = graph.nodes[f"conv{tag}"]
        np.testing.assert_array_equal(c.weight, layer.weight)
        assert tuple(c.stride) == layer.stride and tuple(c.padding) == layer.padding
        lif = graph.nodes[f"lif{tag}"]
        assert isinstance(lif, nir.CubaLIF)
        du, dv = layer.neuron.i_decay / 4096, layer.neuron.v_decay / 4096
        # Euler step of the NIR equations = Loihi's step (docs/nir.md).
        np.testing.assert_allclose(DT / lif.tau_syn, du)
        np.testing.assert_allclose(DT / lif.tau_mem, dv)
        np.testing.assert_allclose(lif.w_in * DT / lif.tau_syn, 1.0)
        np.testing.assert_allclose(lif.r * DT / lif.tau_mem, 1.0)
        assert np.all(lif.v_threshold == layer.neuron.vth_mant) and not np.any(lif.v_reset)
        assert lif.v_threshold.shape == layer.out_shape


def test_export_maps_if_neurons_bias_and_flatten(tmp_path):
    path = mixed_network(tmp_path / "mixed.net")
    out = tmp_path / "mixed.nir"
    export_snn(path, out, dt=0.01)
    graph = nir.read(str(out))
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds == {
        "input": "Input",
        "lif0": "IF",
        "conv1": "Conv2d",
        "lif1": "IF",
        "flatten3": "Flatten",
        "fc3": "Affine",
        "lif3": "CubaLIF",
        "output": "Output",
    }
    # iDecay 4096: the bias moves into the synapse; a decaying current: into v_leak.
    np.testing.assert_array_equal(graph.nodes["conv1"].bias, [3, -2, 0, 5])
    assert not np.any(graph.nodes["fc3"].bias)
    np.testing.assert_allclose(graph.nodes["lif3"].v_leak * 256 / 4096, np.arange(6) - 2)
    np.testing.assert_allclose(graph.nodes["lif3"].tau_syn, 0.01 * 4)
    assert float(graph.metadata["dt"]) == 0.01


def test_export_refuses_delays_and_inexpressible_bias(tmp_path):
    w = np.ones((3, 4), int) * 2
    delayed = tmp_path / "delayed.net"
    write_netx(
        delayed,
        [("input", {"shape": np.array([4])}), ("dense", dense(w, delay=np.array([0, 1, 2])))],
    )
    with pytest.raises(NirError, match="layer 1:dense: synaptic delays"):
        export_snn(delayed, tmp_path / "x.nir")
    biased = tmp_path / "biased.net"
    write_netx(
        biased,
        [
            ("input", {"shape": np.array([4])}),
            ("dense", dense(w, bias=np.ones(3), **neuron(1024, 0, 9))),
        ],
    )
    with pytest.raises(NirError, match="layer 1:dense: a bias .* no NIR equivalent"):
        export_snn(biased, tmp_path / "y.nir")
    assert not (tmp_path / "x.nir").exists() and not (tmp_path / "y.nir").exists()


# --------------------------------------------------------------------------------------------
# round trip
# --------------------------------------------------------------------------------------------


def test_round_trip_of_the_shipped_model_gives_identical_spikes_and_classes(
    default_bundle_dir, tmp_path
):
    from hsnn_perception.training.export import predict_bundle

    export_snn(default_bundle_dir / "snn.net", tmp_path / "d.nir")
    template = ModelBundle.load(default_bundle_dir)
    bundle, report = import_graph(
        tmp_path / "d.nir", tmp_path / "imported", template, ann=default_bundle_dir / "ann.onnx"
    )
    assert [layer.method for layer in report.layers] == ["exact", "exact"]
    assert report.dt_from == "metadata"
    x = spikes(1, (6, 16, 2, 32, 32), 0.08)
    before = layer_spikes(default_bundle_dir / "snn.net", x)
    after = layer_spikes(bundle.snn_file, x)
    assert all(a.sum() > 100 for a in before)  # the comparison is not between silent layers
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        predict_bundle(template, x).logits, predict_bundle(bundle, x).logits
    )
    assert bundle.feature_shape == template.feature_shape
    assert bundle.recipe["nir_import"]["metadata"]["source"] == SOURCE


def test_round_trip_of_if_bias_flatten_and_input_neuron(tmp_path, default_bundle_dir):
    path = mixed_network(tmp_path / "mixed.net")
    export_snn(path, tmp_path / "m.nir")
    template = ModelBundle.load(default_bundle_dir)
    template = ModelBundle(
        **{**template.__dict__, "height": 8, "width": 8, "labels": tuple("abcdef")}
    )
    bundle, report = import_graph(tmp_path / "m.nir", tmp_path / "b", template)
    assert [layer.method for layer in report.layers] == ["exact"] * 3
    assert bundle.ann_file is None and bundle.feature_shape == (6, 1, 1)
    x = spikes(2, (8, 12, 2, 8, 8), 0.3)
    before, after = layer_spikes(path, x), layer_spikes(bundle.snn_file, x)
    assert all(a.sum() > 20 for a in before)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------
# the real-valued reference and quantisation
# --------------------------------------------------------------------------------------------


def test_reference_simulation_equals_loihi_where_its_truncation_never_applies(tmp_path):
    """With every decay 0 or 4096 (a state kept whole or dropped) Loihi truncates nothing, so the
    real-valued network is exact: a non-leaky IF conv with bias, a dense layer whose current
    never decays, a memoryless one."""
    rng = np.random.default_rng(5)
    path = tmp_path / "exact.net"
    write_netx(
        path,
        [
            ("input", {"shape": np.array([2, 8, 8])}),
            (
                "conv",
                conv(
                    rng.integers(-30, 31, (4, 2, 3, 3)),
                    (4, 4, 4),
                    bias=np.array([2, -1, 0, 3]),
                    **neuron(4096, 0, 40),
                ),
            ),
            ("flatten", {"shape": np.array([64, 1, 1])}),
            ("dense", dense(rng.integers(-60, 61, (8, 64)), **neuron(0, 4096, 200))),
            (
                "dense",
                dense(rng.integers(-90, 91, (5, 8)), bias=np.arange(5), **neuron(4096, 4096, 50)),
            ),
        ],
    )
    x = spikes(6, (5, 16, 2, 8, 8), 0.3)
    layers = netx_layers(read_netx(path))
    for fixed, real in zip(layer_spikes(path, x), simulate(layers, x), strict=True):
        assert fixed.sum() > 20
        np.testing.assert_array_equal(fixed, real)


def float_graph(seed: int, bias: bool = False) -> object:
    """A real-valued graph as a training library writes it: conv -> CubaLIF -> flatten ->
    affine -> LIF, threshold 1, small float weights, time constants not multiples of 1/4096."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.35, (4, 2, 3, 3))
    w2 = rng.normal(0, 0.25, (5, 64))
    shape1 = (4, 4, 4)
    nodes = {
        "input": nir.Input(input_type=np.array([2, 8, 8])),
        "conv": nir.Conv2d(
            input_shape=(8, 8), weight=w1, stride=2, padding=1, dilation=1, groups=1,
            bias=np.zeros(4),
        ),
        "lif1": nir.CubaLIF(
            tau_syn=np.full(shape1, 3.3e-4), tau_mem=np.full(shape1, 1.7e-3),
            r=np.full(shape1, 17.0), v_leak=np.zeros(shape1), v_threshold=np.ones(shape1),
            w_in=np.full(shape1, 3.3),
        ),
        "flat": nir.Flatten(input_type={"input": np.array(shape1)}, start_dim=0),
        "fc": nir.Affine(weight=w2, bias=rng.normal(0, 0.05, 5) if bias else np.zeros(5)),
        "lif2": nir.LIF(
            tau=np.full(5, 9e-4), r=np.full(5, 9.0), v_leak=np.zeros(5), v_threshold=np.ones(5)
        ),
        "output": nir.Output(output_type=np.array([5])),
    }  # fmt: skip
    order = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:], strict=True)))


def test_a_real_valued_graph_is_quantised_calibrated_and_close_to_its_float_model(tmp_path):
    shape, layers = nir_layers(float_graph(0, bias=True), DT)
    assert shape == (2, 8, 8)
    assert layers[0].i_decay == pytest.approx(DT / 3.3e-4)
    assert layers[0].v_decay == pytest.approx(DT / 1.7e-3)
    # w_in dt/tau_syn and r dt/tau_mem scale the weights on their way to v.
    scale = 3.3 * DT / 3.3e-4 * 17.0 * DT / 1.7e-3
    np.testing.assert_allclose(layers[0].weight, float_graph(0).nodes["conv"].weight * scale)
    assert layers[1].bias is not None  # LIF: the Affine bias adds to v every step
    x = spikes(7, (48, 16, 2, 8, 8), 0.25)
    report = layers_to_netx(shape, layers, tmp_path / "q.net", calibration=x)
    assert [item.method for item in report] == ["quantised", "quantised"]
    for item in report:
        assert len(item.rate_gains) == 2 and 0.8 < item.rate_gains[-1] < 1.25
        assert item.max_abs_weight <= 254 and item.float_agreement > 0.97
    fixed = layer_spikes(tmp_path / "q.net", x)
    assert all(layer.sum() > 50 for layer in fixed)


def test_a_wide_layer_is_scaled_down_until_its_current_fits_24_bits(tmp_path):
    w = np.full((2, 2048), 0.5)
    w[0, 0] = 0.6
    layer = SpikingLayer("wide", "dense", (2048, 1, 1), (2, 1, 1), 1.0, 0.1, 1.0, weight=w)
    report = layers_to_netx((2048, 1, 1), [layer], tmp_path / "w.net")
    network = read_netx(tmp_path / "w.net")
    worst = np.abs(network.layers[0].weight).sum(axis=1).max()
    assert worst < 1 << 17 and report[0].max_abs_weight < 254
    assert report[0].vth == pytest.approx(report[0].max_abs_weight / 0.6, rel=0.02)


def test_dt_comes_from_the_metadata_else_the_caller(tmp_path, default_bundle_dir):
    graph = float_graph(1)
    nir.write(str(tmp_path / "f.nir"), graph)
    template = ModelBundle(
        **{
            **ModelBundle.load(default_bundle_dir).__dict__,
            "height": 8,
            "width": 8,
            "labels": tuple("abcde"),
        }
    )
    _, report = import_graph(tmp_path / "f.nir", tmp_path / "a", template, dt=2e-4)
    assert (report.dt, report.dt_from) == (2e-4, "argument")
    # 2e-4 s steps make tau_syn 3.3e-4 s lose 0.6 of the current per step.
    assert report.layers[0].i_decay == round(4096 * 2e-4 / 3.3e-4)
    with pytest.raises(NirError, match="shorter than one step"):
        import_graph(tmp_path / "f.nir", tmp_path / "b", template, dt=5e-4)


# --------------------------------------------------------------------------------------------
# refused constructs
# --------------------------------------------------------------------------------------------


def _lif(shape: tuple, **change) -> object:
    params = {
        "tau_syn": np.full(shape, 4e-4),
        "tau_mem": np.full(shape, 1e-3),
        "r": np.full(shape, 10.0),
        "v_leak": np.zeros(shape),
        "v_threshold": np.ones(shape),
        "w_in": np.full(shape, 4.0),
    }
    params.update(change)
    return nir.CubaLIF(**params)


def node_chain(*named: tuple[str, object], edges: list | None = None) -> object:
    nodes = dict(named)
    order = [name for name, _ in named]
    return nir.NIRGraph(
        nodes=nodes,
        edges=edges if edges is not None else list(zip(order[:-1], order[1:], strict=True)),
        type_check=False,
    )


def _inp(shape: tuple = (4,)) -> tuple[str, object]:
    return ("input", nir.Input(input_type=np.array(shape)))


def _out(shape: tuple = (3,)) -> tuple[str, object]:
    return ("output", nir.Output(output_type=np.array(shape)))


def _fc(n_out: int = 3, n_in: int = 4, bias: float = 0.0) -> object:
    return nir.Affine(weight=np.full((n_out, n_in), 0.5), bias=np.full(n_out, bias))


def _refused() -> list[tuple[str, object, str]]:
    conv = nir.Conv2d(
        input_shape=(4, 4),
        weight=np.ones((2, 1, 3, 3)),
        stride=1,
        padding=1,
        dilation=1,
        groups=1,
        bias=np.zeros(2),
    )
    recurrent = node_chain(
        ("input", nir.Input(input_type=np.array([3]))),
        ("lif", _lif((3,))),
        ("w", _fc(3, 3)),
        ("output", nir.Output(output_type=np.array([3]))),
        edges=[("input", "lif"), ("lif", "w"), ("w", "lif"), ("lif", "output")],
    )
    cases = [
        (
            "pooling",
            node_chain(
                _inp((1, 4, 4)),
                (
                    "pool",
                    nir.SumPool2d(
                        kernel_size=np.array([2, 2]),
                        stride=np.array([2, 2]),
                        padding=np.array([0, 0]),
                    ),
                ),
                _out((1, 2, 2)),
            ),
            "'pool' (SumPool2d): pooling",
        ),
        (
            "average pooling",
            node_chain(
                _inp((1, 4, 4)),
                (
                    "avg",
                    nir.AvgPool2d(
                        kernel_size=np.array([2, 2]),
                        stride=np.array([2, 2]),
                        padding=np.array([0, 0]),
                    ),
                ),
                _out((1, 2, 2)),
            ),
            "'avg' (AvgPool2d): pooling",
        ),
        (
            "conv1d",
            node_chain(
                _inp((1, 8)),
                (
                    "c1",
                    nir.Conv1d(
                        input_shape=8,
                        weight=np.ones((1, 1, 3)),
                        stride=1,
                        padding=0,
                        dilation=1,
                        groups=1,
                        bias=np.zeros(1),
                    ),
                ),
                _out((1, 6)),
            ),
            "'c1' (Conv1d): a 1-D convolution",
        ),
        (
            "delay",
            node_chain(_inp(), ("d", nir.Delay(delay=np.ones(4))), _out((4,))),
            "'d' (Delay)",
        ),
        (
            "leaky integrator read-out",
            node_chain(
                _inp(),
                ("fc", _fc()),
                ("li", nir.LI(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3))),
                _out(),
            ),
            "'li' (LI): a non-spiking",
        ),
        (
            "current-based integrator",
            node_chain(
                _inp(),
                ("fc", _fc()),
                (
                    "cli",
                    nir.CubaLI(
                        tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3), v_leak=np.zeros(3)
                    ),
                ),
                _out(),
            ),
            "'cli' (CubaLI): a non-spiking",
        ),
        (
            "integrator",
            node_chain(_inp(), ("fc", _fc()), ("i", nir.I(r=np.ones(3))), _out()),
            "'i' (I)",
        ),
        (
            "threshold",
            node_chain(_inp(), ("fc", _fc()), ("th", nir.Threshold(threshold=np.ones(3))), _out()),
            "'th' (Threshold): a bare Threshold",
        ),
        (
            "scale",
            node_chain(_inp(), ("s", nir.Scale(scale=np.ones(4))), _out((4,))),
            "'s' (Scale)",
        ),
        ("recurrent", recurrent, "recurrent connections are not supported"),
        (
            "nested graph",
            node_chain(_inp(), ("sub", node_chain(_inp(), _out((4,)))), _out((4,))),
            "'sub' (NIRGraph): a nested graph",
        ),
        (
            "branch",
            node_chain(
                _inp(),
                ("a", _fc()),
                ("la", _lif((3,))),
                ("b", _fc()),
                ("lb", _lif((3,))),
                _out(),
                edges=[
                    ("input", "a"),
                    ("input", "b"),
                    ("a", "la"),
                    ("b", "lb"),
                    ("la", "output"),
                    ("lb", "output"),
                ],
            ),
            "'input' (Input) feeds 2 nodes (a, b)",
        ),
        (
            "synapse without neuron",
            node_chain(_inp(), ("fc", _fc()), _out()),
            "'fc' (Affine) feeds the output without a spiking neuron",
        ),
        (
            "two synapses in a row",
            node_chain(_inp(), ("fc1", _fc(4, 4)), ("fc2", _fc()), ("l", _lif((3,))), _out()),
            "'fc2' (Affine): follows 'fc1' (Affine) without a neuron",
        ),
        (
            "neuron after neuron",
            node_chain(_inp(), ("fc", _fc()), ("l1", _lif((3,))), ("l2", _lif((3,))), _out()),
            "'l2' (CubaLIF): follows a CubaLIF without a synapse",
        ),
        (
            "per-neuron time constant",
            node_chain(
                _inp(),
                ("fc", _fc()),
                ("l", _lif((3,), tau_mem=np.array([1e-3, 2e-3, 1e-3]))),
                _out(),
            ),
            "'l' (CubaLIF): tau_mem differs between neurons",
        ),
        (
            "reset to another value",
            node_chain(_inp(), ("fc", _fc()), ("l", _lif((3,), v_reset=np.full(3, -1.0))), _out()),
            "'l' (CubaLIF): v_reset must be 0",
        ),
        (
            "bias into a decaying current",
            node_chain(_inp(), ("fc", _fc(bias=0.2)), ("l", _lif((3,))), _out()),
            "'fc' (Affine): its bias feeds a synaptic current that decays",
        ),
        (
            "time constant below one step",
            node_chain(
                _inp(),
                ("fc", _fc()),
                ("l", _lif((3,), tau_syn=np.full(3, 5e-5), w_in=np.full(3, 0.5))),
                _out(),
            ),
            "'l' (CubaLIF): tau_syn 5e-05 s is shorter than one step",
        ),
        (
            "flatten inside a layer",
            node_chain(
                _inp((1, 4, 4)),
                ("c", conv),
                ("f", nir.Flatten(input_type={"input": np.array([2, 4, 4])})),
                ("l", _lif((32,))),
                _out((32,)),
            ),
            "'f' (Flatten): a Flatten between a synapse and its neuron",
        ),
        (
            "dense without flatten",
            node_chain(_inp((1, 4, 4)), ("fc", _fc(3, 16)), ("l", _lif((3,))), _out()),
            "'fc' (Affine): a dense layer after a (C, H, W) layer needs a Flatten",
        ),
        (
            "no input",
            node_chain(("fc", _fc()), ("l", _lif((3,))), _out()),
            "exactly one Input node",
        ),
        (
            "stray node",
            node_chain(
                _inp(),
                ("fc", _fc()),
                ("l", _lif((3,))),
                _out(),
                ("lonely", _fc()),
                edges=[("input", "fc"), ("fc", "l"), ("l", "output")],
            ),
            "not on the path from the input to the output: lonely",
        ),
        (
            "weights that do not fit",
            node_chain(_inp(), ("fc", _fc(3, 5)), ("l", _lif((3,))), _out()),
            "'fc' (Affine): weight takes 5 inputs but the previous layer gives 4",
        ),
    ]
    return cases


@pytest.mark.parametrize("case", _refused(), ids=lambda case: case[0])
def test_unsupported_constructs_are_refused_naming_the_node_and_the_reason(case):
    _, graph, message = case
    with pytest.raises(NirError) as info:
        nir_layers(graph, DT)
    assert message in str(info.value)


def test_import_refuses_a_bundle_that_could_not_classify(tmp_path, default_bundle_dir):
    nir.write(str(tmp_path / "f.nir"), float_graph(2))
    template = ModelBundle.load(default_bundle_dir)
    small = ModelBundle(**{**template.__dict__, "height": 8, "width": 8})
    with pytest.raises(NirError, match="5 neurons for 11 labels"):
        import_graph(tmp_path / "f.nir", tmp_path / "a", small)
    with pytest.raises(NirError, match="does not take the accumulated SNN output"):
        import_graph(tmp_path / "f.nir", tmp_path / "b", small, ann=template.ann_file)
    with pytest.raises(NirError, match="template bins events into 1"):
        import_graph(
            tmp_path / "f.nir", tmp_path / "c", ModelBundle(**{**small.__dict__, "channels": 1})
        )
    (tmp_path / "bad.nir").write_bytes(b"not hdf5")
    with pytest.raises(NirError, match="not a readable NIR graph"):
        read_graph(tmp_path / "bad.nir")
