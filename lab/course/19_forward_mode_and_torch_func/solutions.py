import torch
from torch.func import functional_call, grad, vmap


class Dual:
    def __init__(self, value, tangent):
        self.value, self.tangent = value, tangent

    @staticmethod
    def lift(other):
        return other if isinstance(other, Dual) else Dual(other, 0.0)  # a constant: tangent 0

    def __add__(self, other):
        other = Dual.lift(other)
        return Dual(self.value + other.value, self.tangent + other.tangent)

    def __sub__(self, other):
        other = Dual.lift(other)
        return Dual(self.value - other.value, self.tangent - other.tangent)

    def __mul__(self, other):
        other = Dual.lift(other)
        return Dual(
            self.value * other.value, self.tangent * other.value + self.value * other.tangent
        )

    def __truediv__(self, other):
        other = Dual.lift(other)
        tangent = (self.tangent * other.value - self.value * other.tangent) / other.value**2
        return Dual(self.value / other.value, tangent)

    def __radd__(self, other):
        return Dual.lift(other) + self

    def __rsub__(self, other):
        return Dual.lift(other) - self

    def __rmul__(self, other):
        return Dual.lift(other) * self

    def __rtruediv__(self, other):
        return Dual.lift(other) / self

    def __pow__(self, n):
        return Dual(self.value**n, n * self.value ** (n - 1) * self.tangent)

    def exp(self):
        value = torch.exp(self.value)
        return Dual(value, value * self.tangent)

    def log(self):
        return Dual(torch.log(self.value), self.tangent / self.value)

    def sin(self):
        return Dual(torch.sin(self.value), torch.cos(self.value) * self.tangent)


def per_sample_grad_norms(model, x, y, loss_fn):
    params = {name: p.detach() for name, p in model.named_parameters()}

    def one_loss(params, xi, yi):
        return loss_fn(functional_call(model, params, (xi[None],)), yi[None])  # a batch of one

    grads = vmap(grad(one_loss), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([g.flatten(1) for g in grads.values()], dim=1).norm(dim=1)
