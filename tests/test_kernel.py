"""The notebooks' kernel, ``fralkit``: started with no configuration, as a plain papermill call or a default
JupyterLab starts it, its ZeroMQ transport is encrypted with CurveZMQ keys (``fralkit_kernel.FralkitProvisioner``).

The kernel tests are skipped, with the reason, where the kernelspec is not installed (the package run from
PYTHONPATH, or installed before the kernelspec existed: ``pip install -e .`` installs it) or libzmq lacks CURVE.
"""
from __future__ import annotations

import json
import queue
from pathlib import Path

import pytest
import zmq
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager

from jupyter_helpers import kernel_installed

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "fralkit"


def _skip_reason() -> str | None:
    if not zmq.has("curve"):
        return "libzmq was built without CURVE: no transport encryption"
    if not kernel_installed(KERNEL):
        return f"the {KERNEL!r} kernelspec is not installed in this environment (pip install -e . installs it)"
    return None


SKIP = _skip_reason()
needs_kernel = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


def test_notebooks_name_the_fralkit_kernel():
    notebooks = sorted((ROOT / "notebooks").glob("0*.ipynb"))
    assert len(notebooks) == 5
    for path in notebooks:
        assert json.loads(path.read_text())["metadata"]["kernelspec"] == {
            "name": KERNEL, "display_name": "Python 3 (fralkit)", "language": "python"}, path.name


def test_kernelspec_names_the_registered_provisioner():
    tomllib = pytest.importorskip("tomllib")
    spec = json.loads((ROOT / "fralkit_kernel" / "kernelspec" / "kernel.json").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    provisioners = project["project"]["entry-points"]["jupyter_client.kernel_provisioners"]
    assert provisioners == {spec["metadata"]["kernel_provisioner"]["provisioner_name"]: "fralkit_kernel:FralkitProvisioner"}
    assert spec["metadata"]["supported_encryption"] == ["curve"]
    assert spec["argv"][:3] == ["python", "-m", "ipykernel_launcher"]  # jupyter_client runs its own sys.executable


@needs_kernel
def test_kernel_without_config_runs_over_an_encrypted_transport(tmp_path, capfd):
    from fralkit_kernel import FralkitProvisioner

    km = KernelManager(kernel_name=KERNEL)  # no config: jupyter_client's transport_encryption stays "disabled"
    assert km.transport_encryption == "disabled"
    km.start_kernel(cwd=str(tmp_path))
    kc = plain = None
    try:
        assert isinstance(km.provisioner, FralkitProvisioner)
        written = json.loads(Path(km.connection_file).read_text())
        assert written["curve_publickey"] and written["curve_secretkey"]
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        outputs = []
        reply = kc.execute_interactive("print(6 * 7)", timeout=60,
                                       output_hook=lambda msg: outputs.append(msg["content"].get("text", "")))
        assert reply["content"]["status"] == "ok" and "42" in "".join(outputs)
        # A client without the keys gets no answer: the kernel's sockets accept CurveZMQ handshakes only.
        plain = BlockingKernelClient()
        plain.load_connection_info({k: v for k, v in written.items() if not k.startswith("curve_")})
        plain.start_channels(iopub=False, stdin=False, hb=False, control=False)
        plain.kernel_info()
        with pytest.raises(queue.Empty):
            plain.get_shell_msg(timeout=3)
    finally:
        for client in (plain, kc):
            if client is not None:
                client.stop_channels()
        km.shutdown_kernel(now=True)
    assert "without encryption" not in capfd.readouterr().err


@needs_kernel
def test_provisioner_leaves_the_transport_alone_where_the_kernel_reads_no_keys(monkeypatch):
    import fralkit_kernel

    km = KernelManager(kernel_name=KERNEL)
    km.pre_start_kernel()  # writes the connection file; launches nothing
    try:
        assert km.curve_secretkey is not None
    finally:
        km.cleanup_resources()
    monkeypatch.setattr(fralkit_kernel, "kernel_reads_curve_keys", lambda: False)  # an ipykernel before 7.3
    km = KernelManager(kernel_name=KERNEL)
    km.pre_start_kernel()
    try:
        assert km.curve_secretkey is None and "curve_secretkey" not in json.loads(Path(km.connection_file).read_text())
    finally:
        km.cleanup_resources()
