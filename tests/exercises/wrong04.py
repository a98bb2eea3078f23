"""Typical wrong answers to 04's exercises, and what the check must say about each."""

WRONG = {
    "04.1": [
        (
            """
def make_clip_hook(limit):
    def hook(grad):
        grad.clamp_(-limit, limit)
        return grad
    return hook
""",
            "the hook changed its argument in place: return a new tensor",
        ),
        (
            """
def make_clip_hook(limit):
    def hook(grad):
        clipped = grad.clamp(-limit, limit)
    return hook
""",
            "the hook returned None, so autograd keeps the gradient unchanged",
        ),
        (
            """
def make_clip_hook(limit):
    return lambda grad: grad.clamp(max=limit)
""",
            "the clipped gradient differs at index 0 (expected -1, got -3) for grad = [-3.0, "
            "-0.5, 0.2, 2.5], limit = 1.0: only the upper side was clipped",
        ),
    ],
    "04.2": [
        (
            """
def linear_output_means(model, x):
    means = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            module.register_forward_hook(
                lambda m, inputs, output, name=name: means.__setitem__(name, output.mean())
            )
    model(x)
    return means
""",
            "2 forward hook(s) still registered after your function returned",
        ),
        (
            """
def linear_output_means(model, x):
    means, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(
                lambda m, inputs, output, name=name: means.__setitem__(name, inputs[0].mean())
            ))
    model(x)
    for handle in handles:
        handle.remove()
    return means
""",
            "that is the layer's input: a forward hook is called as hook(module, inputs, output)",
        ),
        (
            """
def linear_output_means(model, x):
    means, handles = {}, []
    for name, module in model.named_modules():
        handles.append(module.register_forward_hook(
            lambda m, inputs, output, name=name: means.__setitem__(name, output.mean())
        ))
    model(x)
    for handle in handles:
        handle.remove()
    return means
""",
            "keys ['', '0', '1', '2'], expected the Linear layers' names ['0', '2']",
        ),
    ],
}
