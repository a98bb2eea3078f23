from torch import nn


def make_clip_hook(limit):
    def hook(grad):
        return grad.clamp(-limit, limit)  # a new tensor: the argument stays as it was

    return hook


def linear_output_means(model, x):
    means, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):

            def record(module, inputs, output, name=name):
                means[name] = output.mean().item()

            handles.append(module.register_forward_hook(record))
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return means
