"""Tests of hsnn_perception.core.ann.devices: how a GPU is named (what a TensorRT engine's cache
key and a backend's ``device`` carry), and the probes on this machine."""

from __future__ import annotations

from hsnn_perception.core.ann.devices import GpuInfo, cuda_device_info, jetson_model


def test_gpu_info_describes_the_device_as_backends_report_it():
    gpu = GpuInfo(1, "NVIDIA H200", "9.0")
    assert gpu.describe() == "cuda:1 (NVIDIA H200, sm_90)"
    # the power meter is chosen by the text before ":" (registry.POWER_METERS)
    assert gpu.describe().partition(":")[0] == "cuda"


def test_probes_of_this_machine_answer_or_say_none():
    board = jetson_model()
    assert board is None or any(w in board.lower() for w in ("jetson", "nvidia"))
    gpu = cuda_device_info(0)
    if gpu is not None:
        major, _, minor = gpu.compute_capability.partition(".")
        assert gpu.index == 0 and gpu.name and major.isdigit() and minor.isdigit()
    assert cuda_device_info(10_000) is None  # no machine has that many GPUs
