"""AdaFocusV2's parts: crop geometry and gradients, policy, classifiers, the composed model, costs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.early_exit import calibrate, confidence, simulate_exit
from pipeline.frames.patch import box_in_original, patch_origin, sampling_grid
from pipeline.frames.transform import FrameGeometry
from tests.training.tiny import TINY_TRAINING
from training.adafocus import AdaFocusConfig, AdaFocusV2, PatchCrop, PoolingClassifier, coarse_to_fine_order
from training.adafocus.classifiers import RecurrentClassifier
from training.adafocus.costs import step_costs
from training.adafocus.crop import gaussian_blur
from training.adafocus.crop import sampling_grid as torch_sampling_grid
from training.adafocus.evaluation import run_with_exit
from training.adafocus.model import VARIANTS, Exploration
from training.adafocus.presets import paper_activitynet

# The model part of the tiny training configuration.
TINY = {"num_classes": 5, **{k: v for k, v in TINY_TRAINING.items() if k in AdaFocusConfig.__dataclass_fields__}}


def tiny_model(**overrides) -> AdaFocusV2:
    torch.manual_seed(0)
    model = AdaFocusV2(AdaFocusConfig(**{**TINY, **overrides}))
    # Realistic BN statistics and a non-trivial policy, so comparisons mean something.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: the true statistics of the batches
    model.train()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if model.policy is not None:
            torch.nn.init.normal_(model.policy.head.weight, std=0.5)
        for _ in range(2):
            model(torch.randn(8, TINY["num_frames"], 3, 32, 32, generator=generator))
    return model.eval()


# -- the crop ----------------------------------------------------------------------------
def test_integer_origin_is_an_exact_plain_crop():
    frames = torch.randn(3, 3, 64, 64)
    crop = PatchCrop(64, 16)
    origins = torch.tensor([[0.0, 0.0], [48.0, 48.0], [5.0, 31.0]])
    patches = crop(frames, origins / 48)
    for i, (left, top) in enumerate(origins.int().tolist()):
        assert torch.equal(patches[i], frames[i, :, top : top + 16, left : left + 16])


def test_fractional_origin_interpolates_bilinearly():
    frames = torch.randn(1, 3, 40, 40, dtype=torch.float64)
    crop = PatchCrop(40, 8)
    left, top = 10.25, 3.5
    patch = crop(frames, torch.tensor([[left / 32, top / 32]], dtype=torch.float64))
    x0, y0, fx, fy = 10, 3, 0.25, 0.5
    expected = (
        (1 - fx) * (1 - fy) * frames[0, :, y0 : y0 + 8, x0 : x0 + 8]
        + fx * (1 - fy) * frames[0, :, y0 : y0 + 8, x0 + 1 : x0 + 9]
        + (1 - fx) * fy * frames[0, :, y0 + 1 : y0 + 9, x0 : x0 + 8]
        + fx * fy * frames[0, :, y0 + 1 : y0 + 9, x0 + 1 : x0 + 9]
    )
    torch.testing.assert_close(patch[0], expected)


def test_crop_gradient_reaches_the_location():
    frames = torch.randn(2, 3, 24, 24, dtype=torch.float64)
    crop = PatchCrop(24, 10)
    # Away from integer origins, where bilinear sampling is differentiable.
    location = torch.tensor([[0.31, 0.62], [0.77, 0.13]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda loc: crop(frames, loc), (location,), eps=1e-6, atol=1e-5)
    crop(frames, location).sum().backward()
    assert location.grad.abs().min() > 0


def test_blurred_gradient_keeps_the_exact_patch_and_takes_the_blurred_frames_gradient():
    frames = torch.randn(2, 3, 24, 24, dtype=torch.float64)
    crop = PatchCrop(24, 10)
    location = torch.tensor([[0.31, 0.62], [0.77, 0.13]], dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    patches = crop(frames, location, gradient_blur=2.0)
    torch.testing.assert_close(patches, crop(frames, location.detach()), rtol=0, atol=0)  # the values: exact
    (grad,) = torch.autograd.grad((patches * weights).sum(), location)
    blurred = gaussian_blur(frames, 2.0)
    (expected,) = torch.autograd.grad((crop(blurred, location) * weights).sum(), location)
    torch.testing.assert_close(grad, expected)
    (plain,) = torch.autograd.grad((crop(frames, location) * weights).sum(), location)
    assert not torch.allclose(grad, plain)


def test_gaussian_blur_is_the_separable_convolution_with_replicated_edges():
    frames = torch.randn(2, 3, 20, 24, dtype=torch.float64)
    sigma, radius = 1.5, 3
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    padded = torch.nn.functional.pad(frames, (radius,) * 4, mode="replicate")
    rows = torch.nn.functional.conv2d(padded, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    expected = torch.nn.functional.conv2d(rows, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    torch.testing.assert_close(gaussian_blur(frames, sigma), expected)


def test_gaussian_blur_preserves_a_constant_and_smooths_a_checkerboard():
    constant = torch.full((1, 3, 16, 16), 0.7, dtype=torch.float64)
    torch.testing.assert_close(gaussian_blur(constant, 3.0), constant)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2
    blurred = gaussian_blur(checker.double().expand(1, 3, 16, 16), 2.0)
    assert blurred.shape == (1, 3, 16, 16)
    assert float(blurred[..., 4:12, 4:12].std()) < 0.01 * float(checker.double().std())


def test_exploration_noise_is_clipped_into_the_frame_and_keeps_the_gradient():
    locations = torch.full((64, 8, 2), 0.5, requires_grad=True)
    moved = Exploration(noise=0.3).perturb(locations, torch.Generator().manual_seed(0))
    assert float(moved.min()) >= 0.0 and float(moved.max()) <= 1.0
    assert 0.2 < float(moved.std()) < 0.35
    moved.sum().backward()
    inside = (moved > 0) & (moved < 1)
    assert torch.equal(locations.grad, inside.float())  # d(location + noise)/d(location) = 1 unless clipped
    assert Exploration(noise=0.0).perturb(locations) is locations


def test_torch_crop_follows_the_shared_patch_geometry():
    location = np.array([[0.0, 1.0], [0.37, 0.81], [0.5, 0.5]], dtype=np.float32)
    origin = patch_origin(location, 100, 36)
    torch_origin = torch.from_numpy(location) * float(100 - 36)
    np.testing.assert_array_equal(origin, torch_origin.numpy())
    np.testing.assert_array_equal(sampling_grid(origin, 100, 36), torch_sampling_grid(torch_origin, 100, 36).numpy())


def test_patch_box_maps_back_to_original_pixels():
    geometry = FrameGeometry(resize=128, crop=112)
    # A 640x360 video: resized to 228x128, centre crop starts at (58, 8); scale 640/228 by 360/128.
    box = box_in_original((10.0, 20.0), 32, geometry, (640, 360))
    assert box.left == pytest.approx((58 + 10) * 640 / 228)
    assert box.top == pytest.approx((8 + 20) * 360 / 128)
    assert box.width == pytest.approx(32 * 640 / 228)
    assert box.height == pytest.approx(32 * 360 / 128)


# -- policy and classifiers --------------------------------------------------------------
def test_policy_starts_at_the_centre_and_stays_inside():
    model = AdaFocusV2(AdaFocusConfig(**TINY)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 4, 3, 32, 32))
    torch.testing.assert_close(out.locations, torch.full_like(out.locations, 0.5))
    trained = tiny_model()
    with torch.no_grad():
        locations = trained(torch.randn(2, 4, 3, 32, 32)).locations
    assert locations.min() > 0 and locations.max() < 1 and locations.std() > 0


def test_pooling_classifier_keeps_a_running_max_and_a_head_per_step():
    torch.manual_seed(0)
    classifier = PoolingClassifier(6, 8, 3, num_steps=4, dropout=0.0).eval()
    x = torch.randn(4, 3, 6)
    state = classifier.initial_state(4)
    embedded = []
    for t in range(3):
        logits, state = classifier(x[:, t], state, t)
        embedded.append(classifier.embed(x[:, t]))
        torch.testing.assert_close(state, torch.stack(embedded).amax(0).clamp(min=0))
        torch.testing.assert_close(logits, state @ classifier.head_weight[t].T + classifier.head_bias[t])
    # A batch that mixes steps (the service batches videos at different steps).
    steps = torch.tensor([0, 3, 1, 2])
    mixed, _ = classifier(x[:, 0], state, steps)
    for i, t in enumerate(steps.tolist()):
        single, _ = classifier(x[i : i + 1, 0], state[i : i + 1], t)
        torch.testing.assert_close(mixed[i : i + 1], single)


def test_recurrent_classifier_predicts_every_step():
    classifier = RecurrentClassifier(6, 8, 3).eval()
    state = classifier.initial_state(2)
    logits, new_state = classifier(torch.randn(2, 6), state, 0)
    assert logits.shape == (2, 3) and not torch.equal(new_state, state)


# -- the composed model ------------------------------------------------------------------
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "oracle_patch"])  # its test is below
@pytest.mark.parametrize("classifier", ["pooling", "gru"])
def test_step_by_step_equals_whole_clip(variant: str, classifier: str):
    model = tiny_model(variant=variant, classifier=classifier)
    clips = torch.randn(3, 4, 3, 32, 32)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        whole = model(clips, generator=generator)
        generator.manual_seed(1)
        locations = torch.rand(3 * 4, 2, generator=generator).unflatten(0, (3, 4))
        state = model.initial_state(3)
        # Random patches are drawn per call, in another order: compared through their locations.
        for t in range(4 if variant != "random_patch" else 0):
            logits, where, state = model.step(clips[:, t], state, t)
            torch.testing.assert_close(logits, whole.step_logits[:, t], atol=1e-5, rtol=1e-4)
            if where is not None:
                torch.testing.assert_close(where, whole.locations[:, t])
    assert whole.step_logits.shape == (3, 4, 5)
    if variant == "random_patch":
        torch.testing.assert_close(whole.locations, locations)


@pytest.mark.parametrize("frame_order", ["chronological", "coarse_to_fine"])
def test_the_oracle_centres_its_patches_on_the_target_boxes(frame_order: str):
    """Boxes come in the clips' frame order; the patches follow them through the processing order,
    centred and kept inside the frame (x 25 - 8 > 16: the edge stops it); unknown boxes (NaN)
    give the centre patch; a streaming step cannot be an oracle's."""
    torch.manual_seed(0)
    model = AdaFocusV2(AdaFocusConfig(**{**TINY, "variant": "oracle_patch", "frame_order": frame_order})).eval()
    assert (model.config.frame_size, model.config.patch_size) == (32, 16)
    boxes = torch.tensor([[[0, 0, 8, 8], [20, 4, 30, 14], [8, 8, 24, 24], [float("nan")] * 4]]).float()
    with torch.no_grad():
        out = model(torch.randn(1, 4, 3, 32, 32), target_boxes=boxes)
    expected = torch.tensor([[0.0, 0.0], [1.0, (9 - 8) / 16], [0.5, 0.5], [0.5, 0.5]])
    torch.testing.assert_close(out.locations[0], expected[model.order])
    with pytest.raises(ValueError, match="target boxes"):
        model(torch.randn(1, 4, 3, 32, 32))
    with pytest.raises(ValueError, match="target boxes"):
        model.step(torch.randn(1, 3, 32, 32), model.initial_state(1), 0)


@pytest.mark.parametrize("frame_order", ["chronological", "coarse_to_fine"])
def test_real_early_exit_matches_the_offline_simulation(frame_order: str):
    model = tiny_model(frame_order=frame_order)
    # Smooth frames (upsampled 4x4 noise): on white noise a random network turns the 1e-7
    # differences of batched vs one-by-one policy arithmetic into 1e-3 logit differences.
    generator = torch.Generator().manual_seed(5)
    coarse = torch.randn(2 * 40 * 4, 3, 4, 4, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    calibration_clips, test_clips = smooth.unflatten(0, (2, 40, 4))
    with torch.no_grad():
        calibration_logits = model(calibration_clips).step_logits.numpy()
        offline = model(test_clips).step_logits.numpy()
    targets = calibration_logits[:, -1].argmax(-1)  # any labels do: only thresholds matter here
    points = calibrate(calibration_logits, targets, [1.0] * 4, sweep=(0.3, 1.0))
    for point in points:
        expected = simulate_exit(confidence(offline), point.thresholds)
        run = run_with_exit(model, test_clips, point.thresholds)
        np.testing.assert_array_equal(run.exit_steps, expected)
        # The policy's batched and one-by-one arithmetic differ by ~6e-8 in the location, which
        # this random network amplifies to ~1e-3 in the logits (measured); a real model's are smaller.
        np.testing.assert_allclose(run.logits, offline[np.arange(40), expected], atol=5e-3)
        assert run.frames_processed == int((expected + 1).sum())  # nothing after the exit
    assert len({tuple(simulate_exit(confidence(offline), p.thresholds)) for p in points}) > 1


def test_frame_orders():
    assert coarse_to_fine_order(16) == [7, 0, 15, 3, 11, 1, 5, 9, 13, 2, 4, 6, 8, 10, 12, 14]
    # The authors' input_order (LeapLabTHU/AdaFocusV2 test_early_exit.py, run at e97987c) where a
    # plain "midpoints of the gaps" order would differ from theirs:
    assert coarse_to_fine_order(20) == [9, 0, 19, 4, 14, 2, 6, 11, 16, 1, 3, 5, 8, 10, 12, 15, 17, 7, 13, 18]
    for n in range(1, 20):
        assert sorted(coarse_to_fine_order(n)) == list(range(n))
    model = tiny_model(frame_order="coarse_to_fine")
    clips = torch.randn(2, 4, 3, 32, 32)
    reordered = AdaFocusV2(AdaFocusConfig(**TINY)).eval()
    reordered.load_state_dict(model.state_dict())
    with torch.no_grad():
        out = model(clips)
        expected = reordered(clips[:, coarse_to_fine_order(4)])
    torch.testing.assert_close(out.step_logits, expected.step_logits)


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_stop_gradient_keeps_the_policy_out_of_the_global_network(stop_gradient: bool):
    model = tiny_model().train()
    out = model(torch.randn(2, 4, 3, 32, 32), stop_gradient=stop_gradient)
    # Only the focus path: the global network is reached through the policy alone.
    out.local_logits.sum().backward()
    global_grad = sum(p.grad.abs().sum() for p in model.global_net.parameters() if p.grad is not None)
    policy_grad = sum(p.grad.abs().sum() for p in model.policy.parameters() if p.grad is not None)
    assert policy_grad > 0
    assert (global_grad == 0) == stop_gradient


def test_glance_input_downsamples_by_average_pooling():
    model = tiny_model()
    frames = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(
        model.glance_input(frames), frames.unflatten(2, (16, 2)).unflatten(4, (16, 2)).mean((3, 5))
    )


@pytest.mark.parametrize(("patch", "paper"), [(96, 1.1010), (128, 1.6848), (160, 2.4355)])
def test_paper_preset_costs_match_the_paper(patch: int, paper: float):
    costs = step_costs(AdaFocusV2(paper_activitynet(patch)))
    # The paper's totals also count the two training-only auxiliary heads (0.0007 GMACs).
    assert costs.total / 1e9 == pytest.approx(paper, rel=0.005)
    assert costs.policy / 1e9 == pytest.approx(0.0356, rel=0.005)
    assert costs.classifier / 1e9 == pytest.approx(0.0145, rel=0.005)


def test_costs_of_baselines_follow_their_parts():
    full = step_costs(tiny_model(variant="full_frame"))
    glance = step_costs(tiny_model(variant="glance_only"))
    ada = step_costs(tiny_model())
    assert full.glance == 0 and full.policy == 0 and full.focus > ada.focus
    assert glance.focus == 0 and glance.policy == 0
    assert ada.policy > 0 and ada.glance == glance.glance
