"""Stage 4, the non-spiking layers: classifier backends (ONNX Runtime, TensorRT), MAC counting,
the readout from the last layer to class scores."""
