"""What the sessions a test creates asked of their execution providers."""

from __future__ import annotations


def record_fp16(monkeypatch) -> list[bool]:
    """The ``fp16`` each later ``provider_options`` call gets, one entry per graph's session."""
    import pipeline.onnx_steps as onnx_steps

    asked: list[bool] = []
    real = onnx_steps.provider_options

    def recording(graph, providers, **options):
        asked.append(options["fp16"])
        return real(graph, providers, **options)

    monkeypatch.setattr(onnx_steps, "provider_options", recording)
    return asked
