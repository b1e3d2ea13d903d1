"""A reader's JupyterLab, in a real browser: notebook 01 runs on the smoke profile and its data-set browser responds.

JupyterLab is started on 127.0.0.1 with a token, headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by selenium) opens a copy of ``01_data.ipynb`` whose parameters cell says ``profile = "smoke"``, runs every
cell, picks another class in the data-set browser's dropdown and checks that the browser's image changed. The
notebook's own kernel (``fralkit``) runs it, started by JupyterLab's server through ``fralkit_kernel``'s provisioner,
and its log has no "without encryption" warning. Skipped, with the reason, where selenium, Chromium or its driver is
missing (``.ci/run`` installs them) or the fralkit kernelspec is not installed.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from jupyter_helpers import kernel_installed

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or next(
    (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None)
# The flags that run Chromium headless in a container without a display or a GPU, and keep it off the network.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000")

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # reported by the skip below
    webdriver = None


KERNEL = json.loads((ROOT / "notebooks" / "01_data.ipynb").read_text())["metadata"]["kernelspec"]["name"]

pytestmark = [
    pytest.mark.skipif(webdriver is None, reason="selenium is not installed (pip install selenium; .ci/run does)"),
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="no headless browser: apt-get install chromium chromium-driver (.ci/run does)"),
    pytest.mark.skipif(not kernel_installed(KERNEL), reason=f"the notebooks' kernel {KERNEL!r} is not installed "
                                                             "(pip install -e . installs it)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _smoke_copy(folder: Path) -> Path:
    """Notebook 01 with ``profile = "smoke"`` in its parameters cell, as a reader would set it."""
    nb = json.loads((ROOT / "notebooks" / "01_data.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    src = "".join(cell["source"])
    assert 'profile = "quick"' in src
    cell["source"] = src.replace('profile = "quick"', 'profile = "smoke"', 1)
    path = folder / "01_data.ipynb"
    path.write_text(json.dumps(nb))
    return path


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1 with a token, serving a smoke copy of notebook 01; yields its base URL."""
    work = tmp_path / "lab"
    work.mkdir()
    _smoke_copy(work)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "OMP_NUM_THREADS": "1"}
    env.pop("FRALKIT_BATCH", None)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--expose-app-in-browser",
           f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", "--ServerApp.open_browser=False",
           *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])]  # CI runs as root
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def browser(tmp_path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


# The opened notebook's panel, found among the main area's widgets (JupyterLab's app object is exposed by
# --expose-app-in-browser; ``currentWidget`` stays empty until the panel has focus).
_NOTEBOOK_JS = ("const app = window.jupyterapp; let nb = null;"
                "if (app) { for (const w of app.shell.widgets('main')) { if (w.sessionContext) { nb = w; } } }")


def _browser_image(driver) -> str | None:
    """The ``src`` of the data-set browser's image (the widget Output below its dropdowns), or None."""
    imgs = driver.find_elements(By.CSS_SELECTOR, ".widget-vbox .widget-output img")
    return imgs[-1].get_attribute("src") if imgs else None


def test_dataset_browser_in_jupyterlab_responds_to_its_class_dropdown(lab, browser, tmp_path):
    base, token = lab
    browser.get(f"{base}/lab/tree/01_data.ipynb?token={token}")
    wait = WebDriverWait(browser, 60, poll_frequency=0.5)
    wait.until(lambda d: d.execute_script(_NOTEBOOK_JS + "return !!(nb && nb.sessionContext.session"
                                          " && nb.sessionContext.session.kernel"
                                          " && nb.sessionContext.session.kernel.status === 'idle');"))
    browser.execute_script(_NOTEBOOK_JS + "window.jupyterapp.shell.activateById(nb.id);"
                           "return window.jupyterapp.commands.execute('notebook:run-all-cells');")
    WebDriverWait(browser, 150, poll_frequency=1).until(lambda d: _browser_image(d) is not None)
    before = _browser_image(browser)
    selects = browser.find_elements(By.CSS_SELECTOR, ".widget-vbox .widget-dropdown select")
    labels = [s.find_element(By.XPATH, "../label").text for s in selects]
    class_select = next(s for s, text in zip(selects, labels) if text.startswith("class"))
    menu = Select(class_select)
    assert menu.first_selected_option.text, "the browser opened with no class selected"
    menu.select_by_index(1)
    WebDriverWait(browser, 30, poll_frequency=0.5).until(
        lambda d: _browser_image(d) not in (None, before))
    errors = browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] .jp-RenderedText")
    assert not any("Traceback" in e.text for e in errors)
    assert browser.execute_script(_NOTEBOOK_JS + "return nb.sessionContext.session.kernel.name;") == KERNEL
    assert "without encryption" not in (tmp_path / "lab.log").read_text()  # the kernel logs into the server's log
