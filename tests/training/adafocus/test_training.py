"""AdaFocusV2 training: loss terms, learning, resume, unreadable videos, exit, DDP."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.paths import REPO
from tests.training.tiny import TINY_TRAINING
from training.adafocus.config import TrainConfig
from training.adafocus.losses import adafocus_loss, branch_losses
from training.adafocus.model import ClipOutput
from training.adafocus.record import load_model
from training.adafocus.run import train
from training.adafocus.v2.trainer import AdaFocusTrainer
from training.engine.commands import BadDataError, TrainingStopped


def tiny_config(data: Path, out: Path, **overrides) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(out), **{**TINY_TRAINING, **overrides})


# -- the loss ------------------------------------------------------------------------------
def _output(batch=3, steps=4, classes=5, seed=0) -> ClipOutput:
    g = torch.Generator().manual_seed(seed)
    return ClipOutput(*(torch.randn(batch, steps, classes, generator=g) for _ in range(3)), None)


def test_branch_loss_terms():
    out, target = _output(), torch.tensor([0, 3, 1])
    terms = branch_losses(out, target, multi_label=False)
    per_step = [F.cross_entropy(out.step_logits[:, t], target) for t in range(4)]
    torch.testing.assert_close(terms["classifier"], torch.stack(per_step).mean())
    per_frame = torch.stack([F.cross_entropy(out.global_logits[:, t], target) for t in range(4)]).mean()
    torch.testing.assert_close(terms["global_aux"], per_frame)
    assert set(branch_losses(out, target, False, auxiliary=False)) == {"classifier"}
    multi = torch.tensor([[1.0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 1, 0, 0, 0]])
    terms = branch_losses(out, multi, multi_label=True)
    expected = F.binary_cross_entropy_with_logits(out.local_logits, multi[:, None].expand(3, 4, 5))
    torch.testing.assert_close(terms["local_aux"], expected)


def test_total_loss_averages_the_branches():
    a, b, target = _output(seed=1), _output(seed=2), torch.tensor([0, 1, 2])
    total, logged = adafocus_loss((a, b), target, False)
    sums = [sum(branch_losses(o, target, False).values()) for o in (a, b)]
    torch.testing.assert_close(total, (sums[0] + sums[1]) / 2)
    assert {"branch0/classifier", "branch1/local_aux"} <= set(logged)


# -- training ------------------------------------------------------------------------------
def test_a_few_steps_lower_the_loss(tiny_dataset: Path, tmp_path: Path):
    trainer = AdaFocusTrainer(tiny_config(tiny_dataset, tmp_path, lr=5e-3, dropout=0.0))
    clips, target, _, valid, _ = next(iter(trainer.train_loader()))
    trainer.model.eval()
    with torch.no_grad():
        before = adafocus_loss((trainer.model(clips, "centre"),), target, False)[0]
    for _ in range(40):
        trainer.train_step(clips, target, valid)
    trainer.model.eval()
    with torch.no_grad():
        after = adafocus_loss((trainer.model(clips, "centre"),), target, False)[0]
    assert after < 0.7 * before


def test_full_run_resume_and_exit(tiny_dataset: Path, tmp_path: Path):
    whole = train(tiny_config(tiny_dataset, tmp_path / "whole"))
    # The same run, stopped after 2 steps and resumed: identical weights at the end.
    with pytest.raises(TrainingStopped, match="max_steps=2"):
        train(tiny_config(tiny_dataset, tmp_path / "resumed", max_steps=2))
    # The checkpoint carries the training time so far; the resumed run adds its own to it.
    checkpoint_path = tmp_path / "resumed" / "checkpoint.pt"
    checkpoint = torch.load(checkpoint_path, weights_only=False)
    assert checkpoint["train_seconds"] > 0 and checkpoint["train_cpu_seconds"] > 0
    checkpoint["train_seconds"] = 1000.0  # as if the first session had trained for 1000 s
    torch.save(checkpoint, checkpoint_path)
    resumed = train(tiny_config(tiny_dataset, tmp_path / "resumed"))
    assert 1000.0 < resumed["train_seconds"] <= 1000.0 + resumed["seconds_this_session"]
    assert whole["train_seconds"] <= whole["seconds_this_session"]
    assert resumed["steps"] == whole["steps"] == 6
    model_a, record = load_model(tmp_path / "whole" / "model.pt")
    model_b, _ = load_model(tmp_path / "resumed" / "model.pt")
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name
    # The run folder has everything, and the model carries its operating points.
    for name in ("checkpoint.pt", "config.json", "metrics.json", "model.pt", "summary.json", "report.md"):
        assert (tmp_path / "whole" / name).exists(), name
    assert record.operating_points[0]["names"] == ["full"]
    assert len(json.loads((tmp_path / "whole" / "metrics.json").read_text())) == 2
    # Early exit run frame by frame gives the offline logits. (Exit steps are compared in
    # test_adafocus_model: this barely trained model's confidences all lie within 1e-7 of
    # each other, so float rounding decides its exits.)
    for check in whole["test"]["incremental_exit"].values():
        assert check["videos"] == 8 and check["max_abs_logit_diff"] < 1e-4
    assert whole["gmacs_per_video_full"] == pytest.approx(
        4 * sum(whole["step_macs"][k] for k in ("glance", "policy", "focus", "classifier")) / 1e9
    )


def test_resume_refuses_changed_options(tiny_dataset: Path, tmp_path: Path):
    with pytest.raises(TrainingStopped):
        train(tiny_config(tiny_dataset, tmp_path, max_steps=1))
    with pytest.raises(ValueError, match="patch_size"):
        train(tiny_config(tiny_dataset, tmp_path, patch_size=24))


def _with_garbage(tiny_dataset: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    (data / "train" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(500))
    with (data / "train.csv").open("a") as f:
        f.write("train/broken.mp4,2\n")
    return data


def test_unreadable_videos_are_skipped_and_reported(tiny_dataset: Path, tmp_path: Path):
    data = _with_garbage(tiny_dataset, tmp_path)
    summary = train(tiny_config(data, tmp_path / "run", epochs=1, calibration_fraction=0.1))
    assert [Path(p).name for p in summary["unreadable_videos"]] == ["broken.mp4"]
    assert "broken.mp4" in (tmp_path / "run" / "report.md").read_text()
    with pytest.raises(BadDataError, match="broken.mp4"):
        train(tiny_config(data, tmp_path / "strict", epochs=1, strict_data=True))


@pytest.mark.parametrize("variant", ["full_frame", "glance_only"])
def test_baselines_train_in_the_same_harness(tiny_dataset: Path, tmp_path: Path, variant: str):
    summary = train(tiny_config(tiny_dataset, tmp_path, variant=variant, epochs=1))
    assert summary["variant"] == variant and summary["test"]["videos"] == 8


def test_two_process_data_parallel_run(tiny_dataset: Path, tmp_path: Path):
    config = tiny_config(tiny_dataset, tmp_path / "ddp", epochs=1, device="cpu")
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(dataclasses.asdict(config)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    # A session of its own, so that a hang kills torchrun's workers too, not just torchrun.
    process = subprocess.Popen(
        [*command, str(REPO / "training" / "train.py"), "--config", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("the two-process run hung")
    assert process.returncode == 0, stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["steps"] == 3  # 12 videos / global batch 4, each process 2 per step


def test_the_oracle_trains_on_the_target_boxes_and_the_summary_measures_the_focus(tiny_dataset: Path, tmp_path: Path):
    """The synthetic clips carry their target's boxes: the oracle's patches (24 px, inside the
    30-px target of these 32-px frames when centred on it) hold the target in every processed
    frame, and the summary and report say so; without boxes the oracle is refused."""
    oracle = train(tiny_config(tiny_dataset, tmp_path / "oracle", variant="oracle_patch", patch_size=24, epochs=1))
    assert oracle["variant"] == "oracle_patch"
    focus = oracle["test"]["focus"]
    assert focus["frames"] == 8 * 4 and focus["hit_rate"] == 1.0
    assert focus["iou"] == pytest.approx(24 * 24 / (30 * 30), abs=0.06)  # the patch inside the target (clipped)
    assert "hit rate" in (tmp_path / "oracle" / "report.md").read_text()
    no_boxes = tmp_path / "no_boxes"
    shutil.copytree(tiny_dataset, no_boxes)
    for path in no_boxes.rglob("*.boxes.json"):
        path.unlink()
    with pytest.raises(ValueError, match="needs target boxes"):
        train(tiny_config(no_boxes, tmp_path / "oracle_without_boxes", variant="oracle_patch", epochs=1))
