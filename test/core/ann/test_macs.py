import pytest
import torch

from hsnn_perception.core.ann.macs import MacCountError, count_macs


def test_counts_conv_and_linear(tmp_path):
    model = torch.nn.Sequential(
        torch.nn.Conv2d(4, 6, 3, stride=2, padding=1),  # out 6x8x8, 4*3*3 per output
        torch.nn.ReLU(),
        torch.nn.Conv2d(6, 6, 3, padding=1, groups=3),  # out 6x8x8, 2*3*3 per output
        torch.nn.Flatten(),
        torch.nn.Linear(6 * 8 * 8, 11),
    )
    x = torch.zeros(1, 4, 16, 16)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, x, str(path), input_names=["frames"], dynamo=False)
    expected = 6 * 8 * 8 * 4 * 9 + 6 * 8 * 8 * 2 * 9 + 6 * 8 * 8 * 11
    assert count_macs(path) == expected


def test_corrupt_model(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(MacCountError):
        count_macs(path)
