"""The notebooks' Jupyter kernel: ipykernel with its ZeroMQ transport encrypted (CurveZMQ).

The ``fralkit`` kernelspec (installed with the package into ``<prefix>/share/jupyter/kernels/fralkit``) runs
ipykernel as the ``python3`` one does and names ``FralkitProvisioner`` as its kernel provisioner. jupyter_client
provisions CurveZMQ keys only when its ``KernelManager.transport_encryption`` is ``auto`` or ``required``, and papermill
or a default JupyterLab leave it ``disabled``; the provisioner asks for ``auto`` instead, so every client that starts
this kernel (plain papermill, JupyterLab, ``fralkit reproduce``) gets an encrypted transport, and ipykernel has no
reason to warn "Kernel is running over TCP without encryption".

A separate top-level package, not ``fralkit.kernel``: the Jupyter server or papermill process loads the
provisioner, and importing anything under ``fralkit`` would import torch there.
"""
from __future__ import annotations

from typing import Any

import zmq
from jupyter_client.provisioning import LocalProvisioner

__all__ = ["FralkitProvisioner", "kernel_reads_curve_keys"]


def kernel_reads_curve_keys() -> bool:
    """Whether this environment's ipykernel (the kernel this spec starts) uses CurveZMQ keys: 7.3 and later."""
    try:
        from ipykernel.kernelspec import get_kernel_dict
    except ImportError:
        return False
    supported = get_kernel_dict().get("metadata", {}).get("supported_encryption") or ()
    return "curve" in ([supported] if isinstance(supported, str) else supported)


class FralkitProvisioner(LocalProvisioner):
    """``LocalProvisioner`` that asks jupyter_client for CurveZMQ transport encryption (``auto``).

    A manager that asks for ``required`` keeps it. Without libzmq's CURVE support, a jupyter_client older than 8.9
    (no ``transport_encryption``) or an ipykernel older than 7.3, it is ``LocalProvisioner`` unchanged.
    """

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        km = self.parent
        if (km is not None and hasattr(km, "transport_encryption") and "transport_encryption" not in kwargs
                and zmq.has("curve") and kernel_reads_curve_keys()):
            kwargs["transport_encryption"] = "required" if km.transport_encryption == "required" else "auto"
        return await super().pre_launch(**kwargs)
