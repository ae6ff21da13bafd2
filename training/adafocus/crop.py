"""The differentiable patch crop: bilinear sampling at a location chosen by the policy."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def patch_origin(location: Tensor, frame_size: int, patch_size: int) -> Tensor:
    """Top-left corners ``(N, 2)`` as ``(left, top)`` in pixels: ``location * (S - P)``.

    The torch twin of ``frames.patch.patch_origin`` (the definition the service uses).
    """
    return location * float(frame_size - patch_size)


def sampling_grid(origin: Tensor, frame_size: int, patch_size: int) -> Tensor:
    """``grid_sample`` coordinates ``(N, P, P, 2)`` reading pixel ``origin + j`` at patch pixel ``j``.

    The torch twin of ``frames.patch.sampling_grid``; built directly rather than with
    ``affine_grid`` so that an integer origin reads whole pixels (a plain crop).
    """
    steps = torch.arange(patch_size, dtype=origin.dtype, device=origin.device)
    xs = (2 * (origin[:, 0:1] + steps) + 1) / frame_size - 1  # (N, P)
    ys = (2 * (origin[:, 1:2] + steps) + 1) / frame_size - 1
    n = origin.shape[0]
    grid_x = xs[:, None, :].expand(n, patch_size, patch_size)
    grid_y = ys[:, :, None].expand(n, patch_size, patch_size)
    return torch.stack((grid_x, grid_y), dim=-1)


def _blur_matrix(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(size, size)`` matrix of a 1-D Gaussian blur of ``sigma`` pixels with edges replicated."""
    radius = max(1, math.ceil(2 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    rows = torch.arange(size)[:, None].expand(size, len(taps))
    sources = (rows + taps.long()[None, :]).clamp(0, size - 1)
    matrix = torch.zeros(size, size, dtype=torch.float64)
    matrix.index_put_((rows.reshape(-1), sources.reshape(-1)), kernel.repeat(size), accumulate=True)
    return matrix.to(dtype=dtype, device=device)


def gaussian_blur(frames: Tensor, sigma: float) -> Tensor:
    """``frames`` ``(N, C, H, W)`` blurred by a separable Gaussian of ``sigma`` pixels (edges replicated).

    Two matrix products rather than a convolution: with a wide kernel they are an order of
    magnitude faster on CPU.
    """
    rows = _blur_matrix(frames.shape[-2], sigma, frames.dtype, frames.device)
    columns = _blur_matrix(frames.shape[-1], sigma, frames.dtype, frames.device)
    return rows @ frames @ columns.T


class PatchCrop(nn.Module):
    """Crop ``P x P`` patches out of ``S x S`` frames at locations in ``(0, 1)^2``.

    Bilinear interpolation (``grid_sample``, zero padding, ``align_corners=False``): the
    patch always lies inside the frame, fractional origins interpolate between pixels, and
    the gradient with respect to the location flows through the interpolation weights.

    ``gradient_blur`` (pixels, training only): the patch's values stay the exact crop, but its
    gradient with respect to the location is taken through the same crop of the frame blurred
    by a Gaussian of that width (a straight-through estimator). Bilinear interpolation's own
    gradient is the image's gradient under the patch: on pixel-fine detail it points to the
    nearest whole pixel, not to where the loss is lower a few pixels away (docs/adafocus.md,
    "Why the policy stayed at the centre").
    """

    def __init__(self, frame_size: int, patch_size: int) -> None:
        super().__init__()
        if not 0 < patch_size <= frame_size:
            raise ValueError(f"patch size {patch_size} must be positive and at most the frame size {frame_size}")
        self.frame_size = frame_size
        self.patch_size = patch_size

    def forward(self, frames: Tensor, location: Tensor, gradient_blur: float = 0.0) -> Tensor:
        if frames.shape[-1] != self.frame_size or frames.shape[-2] != self.frame_size:
            raise ValueError(f"frames must be {self.frame_size}x{self.frame_size}, got {tuple(frames.shape[-2:])}")
        origin = patch_origin(location.to(frames.dtype), self.frame_size, self.patch_size)
        grid = sampling_grid(origin, self.frame_size, self.patch_size)
        patches = F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if gradient_blur <= 0 or not location.requires_grad:
            return patches
        smooth = F.grid_sample(
            gaussian_blur(frames.detach(), gradient_blur),
            grid,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )
        return patches.detach() + (smooth - smooth.detach())

    def extra_repr(self) -> str:
        return f"frame_size={self.frame_size}, patch_size={self.patch_size}"


def random_locations(
    count: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> Tensor:
    """Uniform locations ``(count, 2)`` in ``[0, 1)^2`` (the random-patch branch)."""
    return torch.rand(count, 2, generator=generator, device=device)
