"""13 · Normalize from measured statistics: against the closed form, then by its effect."""

from __future__ import annotations

import torch

from lab.exercises.feedback import Problem, as_tensor, call, same, tolerance, unseen

F64 = torch.float64
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _images() -> torch.Tensor:
    """(N, 3, H, W) with a different mean and spread per channel, like real photos."""
    torch.manual_seed(0)
    base = torch.rand(6, 3, 4, 4, dtype=F64)
    return unseen(
        base * torch.tensor([0.5, 0.2, 0.8], dtype=F64)[:, None, None]
        + torch.tensor([0.1, 0.6, 0.3], dtype=F64)[:, None, None]
    )


def check_normalize(normalize_from_data) -> str:
    images = _images()
    measured_mean = images.mean(dim=(0, 2, 3))
    measured_std = images.std(dim=(0, 2, 3))
    made = call(normalize_from_data, images.clone(), who="normalize_from_data")
    if not (hasattr(made, "mean") and hasattr(made, "std") and callable(made)):
        raise Problem(
            f"normalize_from_data should return a transforms.Normalize, got {type(made).__name__}"
        )
    given = "6 images of 3 channels, 4×4"
    # statistics measured in float32 are as right as float64 ones: compare at float32's
    # precision (they arrive as Python floats either way)
    rtol, atol = tolerance(torch.zeros((), dtype=torch.float32))
    for what, measured in (("mean", measured_mean), ("std", measured_std)):
        got = as_tensor(torch.as_tensor(getattr(made, what), dtype=F64), f"Normalize's {what}")
        if got.numel() == 1:
            raise Problem(
                f"one {what} for all channels: Normalize needs one per channel (3), so reduce "
                "over dim=(0, 2, 3)"
            )
        if tuple(got.shape) != (3,):
            raise Problem(
                f"Normalize's {what} has shape {tuple(got.shape)}, expected (3,): reduce over "
                "every axis but the channel one, dim=(0, 2, 3)"
            )
        if what == "std":  # either convention is a measured std
            biased = images.std(dim=(0, 2, 3), correction=0)
            if torch.allclose(got, biased, rtol=rtol, atol=atol):
                measured = biased
        same(
            measured,
            got,
            f"Normalize's {what}",
            given=given,
            rtol=rtol,
            atol=atol,
            mistakes=(
                (
                    torch.tensor(IMAGENET_MEAN, dtype=F64),
                    "those are ImageNet's statistics: measure these images' own",
                ),
                (
                    torch.tensor(IMAGENET_STD, dtype=F64),
                    "those are ImageNet's statistics: measure these images' own",
                ),
                (measured_std**2, "that is the variance: Normalize takes the standard deviation"),
            ),
        )
    out = made(images)
    same(
        torch.zeros(3, dtype=F64),
        out.mean(dim=(0, 2, 3)),
        "the normalized mean per channel",
        given=given,
        atol=1e-5,
    )
    same(
        torch.ones(3, dtype=F64),
        out.std(dim=(0, 2, 3), correction=0 if measured is not measured_std else 1),
        "the normalized std per channel",
        given=given,
        rtol=1e-4,
    )
    return "mean and std per channel as measured; normalized, each channel has mean 0, std 1"


CHECKS = {"normalize_from_data": check_normalize}
