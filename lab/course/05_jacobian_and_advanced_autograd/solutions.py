import torch


def jacobian_row(f, x, i):
    x = x.detach().requires_grad_(True)
    y = f(x)
    e_i = torch.zeros_like(y)
    e_i[i] = 1.0  # row i of J is e_iᵀ·J: one vector-Jacobian product
    return torch.autograd.grad(y, x, grad_outputs=e_i)[0]


def second_derivative(f, x):
    x = x.detach().requires_grad_(True)
    (dfdx,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)  # keeps a graph of dfdx
    (d2fdx2,) = torch.autograd.grad(dfdx.sum(), x)
    return d2fdx2
