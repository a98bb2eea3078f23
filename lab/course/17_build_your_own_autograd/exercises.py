# %% [markdown]
# # 17 · Exercises: build your own autograd
#
# This file is your copy: edit it freely, nothing overwrites it. For each exercise, replace
# the `raise NotImplementedError` in the stub cell with your code, run it (Shift+Enter), then
# run the check cell under it: it says what is right, or the first thing that is wrong and for
# which input. Stuck? `hint("17.1")` shows the next hint. From a terminal: `lab check 17`.
#
# The rule of this lesson: your engine computes every gradient itself. While the checks run
# your code, torch's autograd (`backward()`, `torch.autograd.grad`) is switched off.

# %%
import math

import torch

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 17.1 · The backward pass itself
#
# Write `topological_backward(root)`: set `root.grad = 1.0`, then call every node's
# `_backward()` so that each node runs only after **all** the nodes that use it have run.
# A node has `.data`, `.grad`, `._prev` (the nodes it was computed from) and `._backward`
# (adds its gradient, times the local derivative, into its inputs' `.grad`). Some nodes are
# used twice; each `_backward` must run exactly once.


# %%
def topological_backward(root):
    raise NotImplementedError("17.1: seed root.grad, then run every _backward in order")


# %%
check_exercise("17.1", topological_backward)

# %% [markdown]
# ## 17.2 · Three more operations
#
# This `Value` has `+`, `*` and `backward()` done. Write the `_backward` of division
# `a / b`, of `log` and of `sigmoid`: each adds *local derivative × `out.grad`* into its
# inputs' `.grad` — with `+=`, since an input may be used twice (`a / a`).


# %%
class Value:
    def __init__(self, data, _prev=()):
        self.data, self.grad = float(data), 0.0
        self._prev, self._backward = _prev, lambda: None

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other))

        def _backward():
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other))

        def _backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __truediv__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data / other.data, (self, other))

        def _backward():
            raise NotImplementedError("17.2: d(a/b)/da and d(a/b)/db")

        out._backward = _backward
        return out

    def log(self):
        out = Value(math.log(self.data), (self,))

        def _backward():
            raise NotImplementedError("17.2: d log(a)/da")

        out._backward = _backward
        return out

    def sigmoid(self):
        out = Value(1 / (1 + math.exp(-self.data)), (self,))

        def _backward():
            raise NotImplementedError("17.2: d sigmoid(a)/da")

        out._backward = _backward
        return out

    def backward(self):
        order, seen = [], set()

        def visit(node):
            if node not in seen:
                seen.add(node)
                for child in node._prev:
                    visit(child)
                order.append(node)

        visit(self)
        self.grad = 1.0
        for node in reversed(order):
            node._backward()


# %%
check_exercise("17.2", Value)

# %% [markdown]
# ## 17.3 · Unbroadcast
#
# In a tensor engine, `x + b` may broadcast `b` to `x`'s shape. Write `unbroadcast(grad,
# shape)`: the gradient `grad` (of the broadcast shape) summed back to the input's `shape` —
# over the leading axes broadcasting added, and over every axis where `shape` has size 1
# (keeping that axis). Try `unbroadcast(torch.ones(3, 4), (4,))`: `tensor([3., 3., 3., 3.])`.


# %%
def unbroadcast(grad, shape):
    raise NotImplementedError("17.3: sum grad back down to shape")


# %%
check_exercise("17.3", unbroadcast)
