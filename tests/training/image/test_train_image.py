"""Image training: the CondenseNetV2 recipe end to end, resume, bad files, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.paths import REPO
from training.data.synthetic_images import generate
from training.engine.commands import BadDataError, StopRequest, TrainingStopped
from training.image.trainer import ImageTrainConfig, train
from training.models.serialization import load_backbone

TINY_MODEL = {"stages": [1, 1, 1], "growth": [8, 8, 8], "hidden_features": 32}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("images"), seed=1, train_per_class=16, val_per_class=2, size=16)


def tiny_config(data: Path, out: Path, **overrides) -> ImageTrainConfig:
    values = dict(
        data=str(data),
        out=str(out),
        model="condensenetv2_cifar",
        model_kwargs=TINY_MODEL,
        input_size=16,
        epochs=2,
        batch_size=16,
        lr=0.05,
        warmup_epochs=0.5,
        crop_scale_min=0.6,
        eval_crop=1.0,
        workers=0,
        progress=False,
        checkpoint_every=3,
    )
    values.update(overrides)
    return ImageTrainConfig(**values)


def test_tiny_run_condenses_fully_and_converts(image_folder, tmp_path):
    summary = train(tiny_config(image_folder, tmp_path))
    assert summary["steps"] == 20  # 160 images / 16 per batch * 2 epochs
    assert summary["converted"]
    model, meta = load_backbone(tmp_path / "model_converted.pt")
    assert model.converted and meta["classes"] == summary["classes"]
    # The converted model scores exactly what the chosen training-form weights scored.
    assert summary["val_converted"]["top1"] == pytest.approx(summary["val"][summary["weights"]]["top1"])
    history = json.loads((tmp_path / "metrics.json").read_text())
    assert [record["epoch"] for record in history] == [1, 2]


def test_training_lowers_the_loss(image_folder, tmp_path):
    config = tiny_config(image_folder, tmp_path, epochs=6, lr=0.3, ema_decay=0.0, label_smoothing=0.0)
    train(config)
    history = json.loads((tmp_path / "metrics.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.1


def test_an_interrupted_run_resumes_to_the_same_weights(image_folder, tmp_path):
    train(tiny_config(image_folder, tmp_path / "straight"))
    with pytest.raises(TrainingStopped, match="max_steps=4"):
        train(tiny_config(image_folder, tmp_path / "resumed", max_steps=4))
    checkpoint = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert checkpoint["step"] == 4 and checkpoint["train_seconds"] > 0
    checkpoint["train_seconds"] = 1000.0  # the first session's training time, as recorded
    torch.save(checkpoint, tmp_path / "resumed" / "checkpoint.pt")
    summary = train(tiny_config(image_folder, tmp_path / "resumed"))
    assert 1000.0 < summary["train_seconds"] <= 1000.0 + summary["seconds_this_session"]
    assert json.loads((tmp_path / "resumed" / "summary.json").read_text())["train_seconds"] == summary["train_seconds"]
    straight, _ = load_backbone(tmp_path / "straight" / "model_converted.pt")
    resumed, _ = load_backbone(tmp_path / "resumed" / "model_converted.pt")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, name


def test_a_stop_request_checkpoints_at_the_next_step(image_folder, tmp_path):
    class StopAfterTwoChecks(StopRequest):
        checks = 0

        @property
        def reason(self):
            self.checks += 1
            return "SIGTERM" if self.checks > 2 else None

        @reason.setter
        def reason(self, value):
            pass

    with pytest.raises(TrainingStopped, match="SIGTERM at step 3"):
        train(tiny_config(image_folder, tmp_path), StopAfterTwoChecks())
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 3


def test_resuming_with_other_options_is_refused(image_folder, tmp_path):
    with pytest.raises(TrainingStopped):
        train(tiny_config(image_folder, tmp_path, max_steps=2))
    with pytest.raises(ValueError, match="lr: 0.05 -> 0.2"):
        train(tiny_config(image_folder, tmp_path, lr=0.2))
    summary = train(tiny_config(image_folder, tmp_path, lr=0.2, restart=True))
    assert summary["steps"] == 20


def test_unreadable_images_are_skipped_and_reported(image_folder, tmp_path):
    broken = tmp_path / "data"
    for split in ("train", "val"):
        for source in (image_folder / split).rglob("*.jpg"):
            target = broken / source.relative_to(image_folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    garbage = broken / "train" / "disc" / "zz_garbage.jpg"
    garbage.write_bytes(b"this is not an image")
    summary = train(tiny_config(broken, tmp_path / "run", epochs=1))
    assert summary["unreadable_images"] == [str(garbage)]
    with pytest.raises(BadDataError, match="zz_garbage.jpg"):
        train(tiny_config(broken, tmp_path / "strict", epochs=1, strict_data=True))


def test_too_small_a_dataset_is_a_clear_error(image_folder, tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(tiny_config(image_folder, tmp_path, batch_size=1000))


@pytest.mark.slow
def test_cli_sigterm_saves_a_checkpoint_and_the_rerun_finishes(image_folder, tmp_path):
    args = [
        sys.executable,
        "training/train_image.py",
        "--data",
        str(image_folder),
        "--out",
        str(tmp_path),
        "--model",
        "condensenetv2_cifar",
        "--model-kwargs",
        json.dumps(TINY_MODEL),
        "--input-size",
        "16",
        "--epochs",
        "6",  # 10 steps each: the stop comes after the first, long before the last
        "--batch-size",
        "16",
        "--workers",
        "0",
        "--no-progress",
        "--checkpoint-every",
        "1000",
    ]
    # One torch thread, as in a pytest-xdist worker (tests/training/conftest.py): on a two-core
    # machine a two-thread trainer beside another worker runs several times slower.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(args, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait for the end of the first epoch
            if (tmp_path / "metrics.json").exists():
                break
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, err
    assert "rerun the same command to resume" in err
    step = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"]
    assert 10 <= step < 60
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"resuming {tmp_path / 'checkpoint.pt'} at step {step} of 60" in result.stderr
    assert "done:" in result.stdout


def test_data_loading_workers_run_outside_the_training_process(image_folder, tmp_path):
    """Workers start from a fork server (never forked from the threaded trainer) and train normally."""
    summary = train(tiny_config(image_folder, tmp_path, workers=2, epochs=1))
    history = json.loads((tmp_path / "metrics.json").read_text())
    assert len(history) == 1 and history[0]["train_loss"] > 0
    assert summary["train_seconds"] > 0


def test_the_command_stops_cleanly_at_max_steps_and_resumes(image_folder, tmp_path, capsys):
    """``--max-steps`` ends the command with status 0 and the resume hint, not a traceback."""
    from training.train_image import main

    argv = ["--data", str(image_folder), "--out", str(tmp_path), "--model", "condensenetv2_cifar"]
    argv += ["--model-kwargs", json.dumps(TINY_MODEL), "--input-size", "16", "--epochs", "2", "--batch-size", "8"]
    argv += ["--workers", "0", "--no-progress"]
    assert main([*argv, "--max-steps", "1"]) == 0
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert main(argv) == 0
    assert "done:" in capsys.readouterr().out
