import torch
import torch._dynamo
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd


def backward_ops(fn, *inputs):
    recorded = []

    def forward_compiler(graph, example_inputs):
        return make_boxed_func(graph.forward)

    def backward_compiler(graph, example_inputs):
        recorded.extend(str(n.target) for n in graph.graph.nodes if n.op == "call_function")
        return make_boxed_func(graph.forward)

    torch._dynamo.reset()  # a fresh cache: compile again, for this backend
    backend = aot_autograd(fw_compiler=forward_compiler, bw_compiler=backward_compiler)
    torch.compile(fn, backend=backend)(*inputs).backward()  # compiles the backward graph
    return recorded


def predicted_saves():
    return {
        "sin": {"x"},  # cos(x) needs x
        "exp": {"out"},  # exp′ = exp: the output itself
        "relu": {"out"},  # the mask out > 0
        "times_three": set(),  # the constant 3
        "sum_of_both": set(),  # ones
        "product": {"x", "w"},  # d/dx = w, d/dw = x
        "cos_of_sin": {"x", "sin(x)"},  # sin needs x, cos needs its input sin(x)
        "tanh_of_product": {"x", "w", "out"},  # the product's two inputs, tanh's output
    }
