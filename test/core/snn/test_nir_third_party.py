"""hsnn-nir's graphs checked by third-party code: snnTorch's and Norse's own NIR importers load
the export and run it; their spikes are compared with the native runtime (bench/nir_third_party.py
has the functions and the figures of docs/nir.md). And a graph written by snnTorch's own NIR
exporter is imported and compared with snnTorch's forward pass. Skipped, with the reason, where
a library is not installed (requirements-nir.txt)."""

from __future__ import annotations

import numpy as np
import pytest

nir = pytest.importorskip(
    "nir", reason="nir is not installed (pip install -r requirements-nir.txt)"
)

from bench.nir_third_party import (  # noqa: E402
    classify,
    compare,
    latencies,
    run_layers,
    to_loihi_timing,
)
from hsnn_perception.core.hybrid.bundle import ModelBundle  # noqa: E402
from hsnn_perception.core.snn.nir.bundle import import_graph  # noqa: E402
from hsnn_perception.core.snn.nir.export import export_snn  # noqa: E402
from hsnn_perception.core.snn.nir.fixed_point import layer_spikes  # noqa: E402
from hsnn_perception.core.snn.nir.layers import DEFAULT_DT  # noqa: E402
from hsnn_perception.core.snn.quantise import write_netx  # noqa: E402

DT = DEFAULT_DT


def library(name: str) -> str:
    pytest.importorskip(
        name, reason=f"{name} is not installed (pip install --no-deps -r requirements-nir.txt)"
    )
    return name


@pytest.fixture(scope="module")
def default_export(tmp_path_factory, default_bundle_dir):
    from hsnn_perception.training.data import InputSpec, synthetic_spikeset
    from hsnn_perception.training.export import predict_bundle

    out = tmp_path_factory.mktemp("nir") / "default.nir"
    bundle = ModelBundle.load(default_bundle_dir)
    export_snn(bundle.snn_file, out)
    data = synthetic_spikeset(12, InputSpec(), seed=0, first_index=1_000_000)
    native = layer_spikes(bundle.snn_file, data.spikes)
    classes = predict_bundle(bundle, data.spikes).predictions
    return bundle, nir.read(str(out)), data.spikes, native, classes


@pytest.mark.parametrize("name", ["snntorch", "norse"])
def test_the_shipped_model_runs_in_a_third_party_simulator_as_in_the_native_runtime(
    name, default_export
):
    bundle, graph, x, native, native_classes = default_export
    layers = run_layers(library(name), graph, x, DT)
    lags = latencies(graph)
    assert lags == [1, 2]
    for a, b, lag in zip(native, layers, lags, strict=True):
        found = compare(a, b, lag)
        # Not exact: Loihi truncates its decays to integers each step (docs/nir.md).
        assert found["equal"] > 0.995, found
        assert abs(found["spikes"] - found["native_spikes"]) < 0.01 * found["native_spikes"]
        assert found["rate_correlation"] > 0.99, found
        # Without the Loihi latency the two disagree far more: the alignment is real.
        assert compare(a, b, 0)["equal"] < found["equal"]
    classes = classify(bundle, to_loihi_timing(layers[-1], lags[-1]))
    assert (classes == native_classes).mean() >= 11 / 12


def exact_network(path, neuron_if: bool) -> None:
    """Integer weights and decays 0 / 4096 only: Loihi truncates nothing, so a float simulator
    must give the same spikes. ``neuron_if``: non-leaky IF neurons (NIR IF), else memoryless
    CubaLIF (tau = dt)."""
    rng = np.random.default_rng(11)
    i_decay, v_decay = (4096, 0) if neuron_if else (4096, 4096)
    cuba = {
        "neuron/type": "CUBA",
        "neuron/iDecay": i_decay,
        "neuron/vDecay": v_decay,
        "neuron/refDelay": 1,
        "neuron/gradedSpike": False,
    }
    w1 = rng.integers(-30, 31, (4, 2, 3, 3))
    w2 = rng.integers(-60, 61, (5, 64))
    write_netx(
        path,
        [
            ("input", {"shape": np.array([2, 8, 8])}),
            (
                "conv",
                {
                    "shape": np.array([4, 4, 4]),
                    "inChannels": 2,
                    "outChannels": 4,
                    "kernelSize": np.array([3, 3]),
                    "stride": np.array([2, 2]),
                    "padding": np.array([1, 1]),
                    "dilation": np.array([1, 1]),
                    "groups": 1,
                    "weight": w1,
                    # Loihi adds a bias also in the steps before the first input arrives (one
                    # per synaptic layer), which NIR, without latency, cannot: an integrating
                    # neuron would carry that offset (docs/nir.md), a memoryless one does not.
                    "bias": np.array([0, 0, 0, 0] if neuron_if else [2, -1, 0, 3]),
                    **cuba,
                    "neuron/vThMant": 40,
                },
            ),
            ("flatten", {"shape": np.array([64, 1, 1])}),
            (
                "dense",
                {
                    "shape": np.array([5]),
                    "inFeatures": 64,
                    "outFeatures": 5,
                    "weight": w2,
                    **cuba,
                    "neuron/vThMant": 60,
                },
            ),
        ],
    )


@pytest.mark.parametrize(
    ("name", "neuron_if"),
    [("snntorch", False), ("norse", False), ("norse", True)],
    ids=["snntorch-cubalif", "norse-cubalif", "norse-if"],
)
def test_third_party_spikes_are_exact_where_the_arithmetic_is_the_same(name, neuron_if, tmp_path):
    exact_network(tmp_path / "exact.net", neuron_if)
    export_snn(tmp_path / "exact.net", tmp_path / "exact.nir")
    graph = nir.read(str(tmp_path / "exact.nir"))
    kinds = {type(node).__name__ for node in graph.nodes.values()}
    assert ("IF" in kinds) == neuron_if
    x = (np.random.default_rng(12).random((4, 16, 2, 8, 8)) < 0.3).astype(np.uint8)
    native = layer_spikes(tmp_path / "exact.net", x)
    layers = run_layers(library(name), graph, x, DT)
    for a, b, lag in zip(native, layers, latencies(graph), strict=True):
        assert a.sum() > 20
        np.testing.assert_array_equal(a[:, lag:], b[:, : x.shape[1] - lag])


def test_a_graph_written_by_snntorch_imports_and_spikes_like_snntorch(tmp_path, default_bundle_dir):
    """snnTorch's own exporter (export_to_nir) writes the graph; the imported bundle's native
    runtime follows snnTorch's forward pass of the same module."""
    library("snntorch")
    import snntorch as snn
    import snntorch.utils
    import torch
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    beta = 1 - 256 / 4096  # a multiple of 1/4096: Loihi's vDecay 256 exactly

    def leaky(shape: tuple[int, ...]) -> object:
        # Per-neuron tensors: snnTorch's exporter writes scalars with no shape, which NIR's
        # type check refuses. reset_delay=False: the reset in the same step, as on Loihi.
        return snn.Leaky(
            beta=torch.full(shape, beta),
            threshold=torch.ones(shape),
            init_hidden=True,
            reset_mechanism="zero",
            reset_delay=False,
        )

    # No biases: Loihi adds a bias also in the steps before a layer's first input arrives,
    # which a NIR simulator (no latency) does not; with a leaky integrator that start-up offset
    # lasts (docs/nir.md measures it).
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False),
        leaky((4, 4, 4)),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 5, bias=False),
        leaky((5,)),
    )
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[3].weight.mul_(4.0)
    graph = export_to_nir(net, torch.zeros(1, 2, 8, 8), ignore_dims=[0])
    nir.write(str(tmp_path / "snntorch.nir"), graph)
    x = (np.random.default_rng(13).random((16, 16, 2, 8, 8)) < 0.25).astype(np.uint8)

    snn.utils.reset(net)
    record = []
    net[1].register_forward_hook(lambda _m, _a, out: record.append(out.detach().numpy()))
    finals = []
    with torch.no_grad():
        for step in range(x.shape[1]):
            finals.append(net(torch.from_numpy(x[:, step].astype(np.float32))).numpy())
    theirs = [
        np.stack(record, axis=1).reshape(16, 16, -1).astype(np.uint8),
        np.stack(finals, axis=1).astype(np.uint8),
    ]
    template = ModelBundle.load(default_bundle_dir)
    small = ModelBundle(**{**template.__dict__, "height": 8, "width": 8, "labels": tuple("abcde")})
    bundle, report = import_graph(tmp_path / "snntorch.nir", tmp_path / "b", small, dt=DT)
    assert [layer.method for layer in report.layers] == ["quantised", "quantised"]
    assert [layer.v_decay for layer in report.layers] == [256, 256]
    ours = layer_spikes(bundle.snn_file, x)
    for a, b, lag in zip(ours, theirs, (1, 2), strict=True):
        found = compare(a, b, lag)
        assert found["native_spikes"] > 50, found
        # Not exact: 8-bit weights and Loihi's truncated decays.
        assert found["equal"] > 0.98 and found["rate_correlation"] > 0.95, found
    # The imported bundle runs in Lava's Loihi simulation spike for spike as in the native
    # runtime (so on a Loihi board through lava-hw too): what the SNN node runs with either.
    from hsnn_perception.core.snn.runtime import load_snn

    native = load_snn(bundle.snn_file, backend="native")
    with load_snn(bundle.snn_file, backend="lava") as lava:
        for sample in x[:2]:
            np.testing.assert_array_equal(lava.run_window(sample)[0], native.run_window(sample)[0])
