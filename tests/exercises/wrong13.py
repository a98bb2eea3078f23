"""Typical wrong answers to 13's exercise, and what the check must say about each."""

WRONG = {
    "13.1": [
        (
            """
from torchvision import transforms

def normalize_from_data(images):
    return transforms.Normalize(images.mean().item(), images.std().item())
""",
            "one mean for all channels: Normalize needs one per channel (3)",
        ),
        (
            """
from torchvision import transforms

def normalize_from_data(images):
    return transforms.Normalize(images.mean(dim=0), images.std(dim=0))
""",
            "Normalize's mean has shape (3, 4, 4), expected (3,): reduce over every axis but the "
            "channel one, dim=(0, 2, 3)",
        ),
        (
            """
from torchvision import transforms

def normalize_from_data(images):
    return transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
""",
            "those are ImageNet's statistics: measure these images' own",
        ),
        (
            """
def normalize_from_data(images):
    return images.mean(dim=(0, 2, 3)), images.std(dim=(0, 2, 3))
""",
            "normalize_from_data should return a transforms.Normalize, got tuple",
        ),
    ],
}
