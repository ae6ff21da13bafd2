"""The inference service (FastAPI + ONNX Runtime). It must never import torch."""
