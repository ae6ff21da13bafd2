"""The torch-free video pipeline that training and serving share, so the two never disagree.

* :mod:`pipeline.frames`: decode a video, sample its frames, resize, crop and normalise them.
* :mod:`pipeline.early_exit`: calibrate and apply the conditional-exit rule on per-step logits.
* :mod:`pipeline.manifest`: the manifest of an exported model (frames, graphs, exit points).
* :mod:`pipeline.repository`: find, validate and checksum-verify manifests in a model repository.
* :mod:`pipeline.onnx_steps`: run an exported model on ONNX Runtime, step by step with early exit.

Nothing here imports torch or the training code (``lint-imports`` enforces it).
"""
