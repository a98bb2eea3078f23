"""13 · Normalize from measured statistics: against the closed form, then by its effect."""

from __future__ import annotations

import torch

from lab.exercises.feedback import Problem, as_tensor, call, same

F64 = torch.float64
IMAGENET_MEAN = (0.485, 0.456, 0.406)


def _images() -> torch.Tensor:
    """(N, 3, H, W) with a different mean and spread per channel, like real photos."""
    torch.manual_seed(0)
    base = torch.rand(6, 3, 4, 4, dtype=F64)
    return (
        base * torch.tensor([0.5, 0.2, 0.8], dtype=F64)[:, None, None]
        + torch.tensor([0.1, 0.6, 0.3], dtype=F64)[:, None, None]
    )


def check_normalize(normalize_from_data) -> str:
    images = _images()
    made = call(normalize_from_data, images.clone(), who="normalize_from_data")
    if not (hasattr(made, "mean") and hasattr(made, "std") and callable(made)):
        raise Problem(
            f"normalize_from_data should return a transforms.Normalize, got {type(made).__name__}"
        )
    given = "6 images of 3 channels, 4×4"
    for what, measured in (("mean", images.mean(dim=(0, 2, 3))), ("std", None)):
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
        if measured is None:  # either std convention is a measured std
            measured = images.std(dim=(0, 2, 3))
            if torch.allclose(got, images.std(dim=(0, 2, 3), correction=0)):
                measured = got
        same(
            measured,
            got,
            f"Normalize's {what}",
            given=given,
            mistakes=(
                (
                    torch.tensor(IMAGENET_MEAN, dtype=F64),
                    "those are ImageNet's statistics: measure these images' own",
                ),
            ),
        )
    out = made(images)
    same(torch.zeros(3, dtype=F64), out.mean(dim=(0, 2, 3)), "the normalized mean", atol=1e-9)
    return "mean and std per channel as measured; normalized, each channel has mean 0, std 1"


CHECKS = {"normalize_from_data": check_normalize}
