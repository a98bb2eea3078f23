from torchvision import transforms


def normalize_from_data(images):
    mean = images.mean(dim=(0, 2, 3))  # one per channel: reduce over N, H and W
    std = images.std(dim=(0, 2, 3))
    return transforms.Normalize(mean.tolist(), std.tolist())
