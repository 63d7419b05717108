"""Tests of hsnn_perception.core.ann.onnxruntime on a small ONNX model built here, run by real
onnxruntime: results against a numpy reference, providers, threads, bad input."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from core.ann.ann_fixtures import (
    CLASSES,
    SHAPE,
    Messages,
    event_frames,
    make_classifier,
    reference_logits,
)
from hsnn_perception.core.ann.backends import (
    BackendError,
    create_backend,
)
from hsnn_perception.core.ann.onnxruntime import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    DEFAULT_THREADS,
    TENSORRT_PROVIDER,
    describe_device,
    resolve_providers,
    session_options,
)


def test_onnxruntime_cpu_matches_numpy_reference(model, tmp_path):
    path, weights = model
    x = event_frames(6)
    with create_backend("onnxruntime", path, providers="cpu", cache_dir=tmp_path) as backend:
        assert backend.name == "onnxruntime[CPUExecutionProvider]"
        assert backend.device == "cpu"
        assert backend.input_name == "frames"
        assert backend.input_shape == SHAPE
        assert backend.output_name == "logits"
        for sample in x:
            got = backend.infer(sample[None])
            assert got.dtype == np.float32 and got.shape == (1, CLASSES)
            np.testing.assert_allclose(got, reference_logits(sample[None], weights), atol=1e-4)
        # the batch axis of 1 may be left out; integer counts are accepted and cast
        np.testing.assert_array_equal(backend.infer(x[0]), backend.infer(x[0:1]))
        np.testing.assert_array_equal(backend.infer(x[0].astype(np.uint16)), backend.infer(x[0:1]))
    assert backend.closed
    with pytest.raises(BackendError, match="closed"):
        backend.infer(x[0])


def test_dynamic_batch_model_takes_any_batch(tmp_path):
    path = tmp_path / "dyn.onnx"
    weights = make_classifier(path, batch="N")
    backend = create_backend("onnxruntime", path, providers="cpu", cache_dir=tmp_path)
    assert backend.input_shape == (None, *SHAPE[1:])
    x = event_frames(5)
    np.testing.assert_allclose(backend.infer(x), reference_logits(x, weights), atol=1e-4)


def test_auto_uses_what_this_onnxruntime_offers(model, tmp_path):
    path, _ = model
    messages = Messages()
    backend = create_backend(
        "onnxruntime", path, providers="auto", cache_dir=tmp_path, logger=messages
    )
    available = ort.get_available_providers()
    best = next(p for p in (TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER) if p in available)
    assert backend.name == f"onnxruntime[{best}]"
    assert backend.providers[-1] == CPU_PROVIDER
    if best == CPU_PROVIDER:
        assert backend.device == "cpu"
        assert "not available" in messages.text()


def test_missing_gpu_provider_falls_back_to_cpu_with_reason(model, tmp_path):
    if CUDA_PROVIDER in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider; the fallback cannot happen")
    path, weights = model
    messages = Messages()
    backend = create_backend(
        "onnxruntime", path, providers="cuda", cache_dir=tmp_path, logger=messages
    )
    assert backend.name == "onnxruntime[CPUExecutionProvider]"
    assert CUDA_PROVIDER in messages.text() and "falling back" in messages.text()
    x = event_frames(1)
    np.testing.assert_allclose(backend.infer(x), reference_logits(x, weights), atol=1e-4)


@pytest.mark.parametrize(
    ("requested", "available", "expected"),
    [
        (
            "auto",
            [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER],
            [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER],
        ),
        ("auto", [CUDA_PROVIDER, CPU_PROVIDER], [CUDA_PROVIDER, CPU_PROVIDER]),
        ("auto", ["AzureExecutionProvider", CPU_PROVIDER], [CPU_PROVIDER]),
        (
            "tensorrt",
            [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER],
            [TENSORRT_PROVIDER, CPU_PROVIDER],
        ),
        ("tensorrt", [CUDA_PROVIDER, CPU_PROVIDER], [CPU_PROVIDER]),
        (
            ("cuda", "cpu"),
            [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER],
            [CUDA_PROVIDER, CPU_PROVIDER],
        ),
        (("cpu", "cuda"), [CUDA_PROVIDER, CPU_PROVIDER], [CPU_PROVIDER, CUDA_PROVIDER]),
        (
            (CUDA_PROVIDER, "CUDA", "auto"),
            [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER],
            [CUDA_PROVIDER, TENSORRT_PROVIDER, CPU_PROVIDER],
        ),
    ],
)
def test_resolve_providers_order_and_fallback(requested, available, expected):
    messages = Messages()
    got = resolve_providers(requested, available, known=ort.get_all_providers(), logger=messages)
    assert got == expected
    dropped = [p for p in (TENSORRT_PROVIDER, CUDA_PROVIDER) if p not in available]
    asked = requested if isinstance(requested, tuple) else (requested,)
    if dropped and ("auto" in asked or "tensorrt" in asked):
        assert any(p in messages.text() for p in dropped)
    if got == [CPU_PROVIDER] and requested != "cpu":
        assert "not available" in messages.text()


def test_resolve_providers_with_the_real_provider_list():
    available = ort.get_available_providers()
    got = resolve_providers("auto", available, known=ort.get_all_providers(), logger=Messages())
    assert got[-1] == CPU_PROVIDER
    assert all(p in available for p in got)
    assert got == [p for p in (TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER) if p in available]


@pytest.mark.parametrize("bad", ["gpu", "TensorRT-EP", (), ["cpu", 3]])
def test_resolve_providers_rejects_unknown_names(bad):
    with pytest.raises(BackendError) as err:
        resolve_providers(bad, [CPU_PROVIDER], known=ort.get_all_providers(), logger=Messages())
    assert isinstance(err.value, ValueError)


def test_bad_inputs_raise_clear_errors(model, tmp_path):
    path, _ = model
    backend = create_backend("onnxruntime", path, providers="cpu", cache_dir=tmp_path)
    good = event_frames(1)
    with pytest.raises(BackendError, match=r"shape \(1, 8, 12, 13\).*\(1, 8, 12, 12\)"):
        backend.infer(np.zeros((1, 8, 12, 13), np.float32))
    with pytest.raises(BackendError, match="shape"):
        backend.infer(np.zeros((2, *SHAPE[1:]), np.float32))  # the model has a fixed batch of 1
    with pytest.raises(BackendError, match="shape"):
        backend.infer(np.zeros(SHAPE[2:], np.float32))
    nan = good.copy()
    nan[0, 0, 0, :3] = np.nan
    with pytest.raises(BackendError, match="3 NaN and 0 infinite"):
        backend.infer(nan)
    inf = good.copy()
    inf[0, 1, 2, 3] = -np.inf
    with pytest.raises(BackendError, match="0 NaN and 1 infinite"):
        backend.infer(inf)
    with pytest.raises(BackendError, match="infinite"):
        backend.infer(np.full(SHAPE, 1e300))  # does not fit float32
    with pytest.raises(BackendError, match="dtype complex"):
        backend.infer(good.astype(np.complex64))
    with pytest.raises(BackendError, match="numpy array, got list"):
        backend.infer(good.tolist())
    # and it still works afterwards
    assert backend.infer(good).shape == (1, CLASSES)


def test_describe_device_cpu():
    assert describe_device(CPU_PROVIDER) == "cpu"


def test_threads_are_set_explicitly_and_workers_do_not_spin(model, tmp_path):
    """One intra-op and one inter-op thread and no spinning by default (a pipeline stage); more
    threads on request give the same logits."""
    path, weights = model
    x = event_frames(3)
    with create_backend("onnxruntime", path, providers="cpu", cache_dir=tmp_path) as one:
        opts = one._session.get_session_options()
        assert (one.threads, one.spin) == (DEFAULT_THREADS, False) == (1, False)
        assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert opts.get_session_config_entry("session.inter_op.allow_spinning") == "0"
        want = [one.infer(s[None]) for s in x]
    with create_backend(
        "onnxruntime", path, providers="cpu", cache_dir=tmp_path, threads=2, spin=True
    ) as two:
        opts = two._session.get_session_options()
        assert opts.intra_op_num_threads == 2
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "1"
        for sample, logits in zip(x, want, strict=True):
            np.testing.assert_allclose(two.infer(sample[None]), logits, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(logits, reference_logits(sample[None], weights), atol=1e-4)


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_bad_thread_counts_are_refused_before_any_work(model, tmp_path, bad):
    path, _ = model
    with pytest.raises(BackendError, match="threads must be an integer >= 0"):
        create_backend("onnxruntime", path, providers="cpu", cache_dir=tmp_path, threads=bad)
    with pytest.raises(BackendError, match="threads must be"):
        session_options(bad)
