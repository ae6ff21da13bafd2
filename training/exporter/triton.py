"""Triton Inference Server's ``config.pbtxt`` for one exported graph (ONNX Runtime backend).

The repository the exporter writes is in Triton's layout, so Triton can serve the graphs
as they are; the service itself does not need these files.
"""

from __future__ import annotations

TRITON_MAX_BATCH = 64

_TRITON_TYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64"}


def triton_config(model_name: str, inputs: list[dict], outputs: list[dict], labels: bool) -> str:
    """A ``config.pbtxt`` for ONNX Runtime in Triton, batch axis implicit, dynamic batching on."""

    def block(kind: str, specs: list[dict]) -> str:
        entries = []
        for spec in specs:
            # Triton wants at least one dimension besides the batch: a per-frame scalar (the
            # classifier's step) is declared as [1] and reshaped to the model's [] per frame.
            shape = spec["shape"][1:]
            dims = f"dims: [ {', '.join(map(str, shape))} ]" if shape else "dims: [ 1 ]\n    reshape: { shape: [ ] }"
            label = '\n    label_filename: "labels.txt"' if labels and spec["name"] == "logits" else ""
            entries.append(
                f'  {{\n    name: "{spec["name"]}"\n    data_type: {_TRITON_TYPES[spec["dtype"]]}\n'
                f"    {dims}{label}\n  }}"
            )
        return f"{kind} [\n" + ",\n".join(entries) + "\n]\n"

    return (
        f'name: "{model_name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {TRITON_MAX_BATCH}\n'
        + block("input", inputs)
        + block("output", outputs)
        + "dynamic_batching {\n  max_queue_delay_microseconds: 2000\n}\n"
    )
