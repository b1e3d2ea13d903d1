"""Helpers shared by the tests that start Jupyter kernels (test_kernel.py, test_browser.py)."""
from __future__ import annotations

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel


def kernel_installed(name: str) -> bool:
    """Whether Jupyter finds kernelspec ``name`` here (a spec whose provisioner is not registered is not listed)."""
    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return False
    return True
