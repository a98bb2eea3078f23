"""GPU usage via NVML: ``lab gpu`` (report, ``--json``, ``--watch``) and a sampler that writes
GPU metrics into a lesson's TensorBoard run.

Only :mod:`lab.gpu.nvml` talks to NVML (nvidia-ml-py's ``pynvml``). Nothing in this package
imports torch: the host runs ``lab gpu`` with nvidia-ml-py alone.
"""
