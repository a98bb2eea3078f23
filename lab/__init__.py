"""Autograd Lab: lessons, datasets and tooling for learning PyTorch autograd.

Importing ``lab`` (or any host-side module: ``lab.cli``, ``lab.lessons``, ``lab.data``,
``lab.gpu``) never imports torch, so the host needs only a light install.
"""

__version__ = "0.1.0"
