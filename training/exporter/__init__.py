"""Export a trained run to the model repository: ONNX graphs, Triton configuration, TensorRT
engines, the pipeline manifest, and the checks that the exported graphs match PyTorch."""
