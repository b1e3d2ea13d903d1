"""Notebooks: committed without outputs, parameterised, and each runs end to end on the smoke profile."""
import json
from pathlib import Path

import pytest

from fralkit.reproduce import NOTEBOOKS, NotebookFailed, find_notebooks, run_notebook

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
ALL = sorted(NB_DIR.glob("*.ipynb"))


def test_every_listed_notebook_exists():
    assert [p.name for p in ALL] == sorted(NOTEBOOKS.values())


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_notebook_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name}: a code cell has outputs; clear them before committing"
            assert cell.get("execution_count") is None, f"{path.name}: a code cell has an execution count"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_notebook_is_thin_and_parameterised(path):
    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one cell must be tagged 'parameters'"
    assert nb["cells"][0]["cell_type"] == "markdown", f"{path.name}: must open with a markdown cell"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            src = "".join(cell["source"])
            assert not any(line.lstrip().startswith(("def ", "class ")) for line in src.splitlines()), \
                f"{path.name}: no def/class in notebooks; put it in the fralkit package"


@pytest.mark.parametrize("key", sorted(NOTEBOOKS))
def test_notebook_smoke_run(key, tmp_path, monkeypatch):
    (key_, path), = find_notebooks([key], NB_DIR)
    if key == "04":  # bars on (conftest turns them off) to check what a batch run saves of them
        monkeypatch.delenv("FRALKIT_NO_PROGRESS", raising=False)
    entry = run_notebook(key_, path, "smoke", executed_dir=tmp_path / "executed", figures=tmp_path / "figures",
                         results=tmp_path / "results", log_output=False)
    assert entry["files"], f"{path.name} wrote no figure or table"
    assert all(name.startswith(f"{key}_") for name in entry["files"])
    assert (tmp_path / "executed" / path.name).exists()
    executed = json.loads((tmp_path / "executed" / path.name).read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name}: no figure shown inline"
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs), \
        f"{path.name}: a widget (or a widget progress bar) was saved by a batch run"
    assert not any("PosixPath(" in "".join(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                   for o in outputs), f"{path.name}: a figure cell printed its file paths"
    if key == "04":  # the study's bar over (row, seed) as plain text; its stage bars show in interactive runs only
        run_cell = next(c for c in executed["cells"] if "fk.studies.run(" in "".join(c["source"]))
        text = "".join("".join(o.get("text", "")) for o in run_cell["outputs"])
        assert "farmur runs: 100%|" in text and "[farmur] lenet5-mnist seed 0" in text
        assert "\x1b[" not in text, f"{path.name}: a progress bar wrote terminal cursor moves"
    html = tmp_path / "executed" / path.with_suffix(".html").name
    assert html.exists() and entry["html"].endswith(html.name) and "data:image/png;base64" in html.read_text()


def test_failing_notebook_names_the_cell(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("x"), nbformat.v4.new_code_cell("profile = 'smoke'"),
                nbformat.v4.new_code_cell("raise RuntimeError('boom')")]
    nb.cells[1].metadata["tags"] = ["parameters"]
    bad = tmp_path / "01_data.ipynb"
    nbformat.write(nb, str(bad))
    with pytest.raises(NotebookFailed, match=r"01_data.ipynb failed in cell \d+ .*raise RuntimeError.*boom"):
        run_notebook("01", bad, "smoke", executed_dir=tmp_path / "ex", figures=tmp_path / "fig", log_output=False)


def test_runner_rejects_unknown_profile_and_notebook():
    from fralkit.reproduce import main

    with pytest.raises(SystemExit):
        main(["reproduce", "--profile", "huge"])
    assert main(["reproduce", "--only", "09", "--profile", "smoke"]) == 1


def test_reproduce_writes_manifest(tmp_path):
    """A one-notebook run records profile, device, versions, commit, wall time and the files written."""
    import nbformat

    from fralkit.reproduce import reproduce

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("x"), nbformat.v4.new_code_cell("profile = 'quick'"),
                nbformat.v4.new_code_cell("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
                                          "from fralkit.plots import savefig\nsavefig(plt.figure(), f'01_probe_{profile}')")]
    nb.cells[1].metadata["tags"] = ["parameters"]
    folder = tmp_path / "nbs"
    folder.mkdir()
    nbformat.write(nb, str(folder / "01_data.ipynb"))
    manifest = reproduce("smoke", only=["01"], out=tmp_path / "fig", executed=tmp_path / "ex", notebooks_dir=folder,
                         overrides={"n": 123})
    assert list(manifest["notebooks"]) == ["01 n=123"]  # the part of a split run keeps its own entry
    entry = manifest["notebooks"]["01 n=123"]
    assert entry["profile"] == "smoke" and entry["wall_s"] >= 0
    assert entry["parameters"]["n"] == 123  # an override is recorded with the run
    assert entry["files"] == ["01_probe_smoke.pdf", "01_probe_smoke.png"]
    for key in ("device", "torch", "git_commit", "python"):
        assert entry[key]
    on_disk = json.loads((tmp_path / "fig" / "manifest.json").read_text())
    assert on_disk["notebooks"]["01 n=123"]["files"] == entry["files"]


def test_manifest_key_names_the_overrides_in_a_fixed_order():
    from fralkit.reproduce import manifest_key

    assert manifest_key("03") == manifest_key("03", {}) == "03"
    assert manifest_key("03", {"seeds": 1, "dataset": "synbols-ham"}) == "03 dataset=synbols-ham seeds=1"


def test_parse_overrides_reads_literals_and_keeps_words():
    from fralkit.reproduce import parse_overrides

    got = parse_overrides(["seeds=1", "dataset=synbols-cinic", "data_root=None", "lr=0.05", "calibrate=False"])
    assert got == {"seeds": 1, "dataset": "synbols-cinic", "data_root": None, "lr": 0.05, "calibrate": False}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["seeds"])


def test_runner_rejects_an_override_that_is_no_parameter(tmp_path, capsys):
    from fralkit.reproduce import main

    assert main(["reproduce", "--profile", "smoke", "--only", "03", "--set", "datset=synbols-cinic",
                 "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "datset" in err and "dataset" in err  # names the typo and lists the valid keys
    assert not (tmp_path / "manifest.json").exists()  # nothing ran


def test_split_parts_one_per_dataset_and_seed():
    from fralkit.reproduce import split_parts

    assert split_parts("03", {"dataset": "synbols-utk, synbols-ham", "seeds": 2}) == [
        {"dataset": "synbols-utk", "seeds": [0]}, {"dataset": "synbols-utk", "seeds": [1]},
        {"dataset": "synbols-ham", "seeds": [0]}, {"dataset": "synbols-ham", "seeds": [1]}]
    assert split_parts("03", {"dataset": "synbols-utk", "seeds": [2, 5]})[1] == {"dataset": "synbols-utk", "seeds": [5]}
    with pytest.raises(ValueError, match="splits notebooks"):
        split_parts("02", {})


def test_jobs_split_notebook_03_into_parallel_parts_and_draw_once(tmp_path):
    """Two seeds as two processes sharing one store; the drawing pass computes nothing and sees both seeds."""
    from fralkit.reproduce import reproduce

    manifest = reproduce("smoke", only=["03"], out=tmp_path / "fig", executed=tmp_path / "ex", results=tmp_path / "res",
                         overrides={"seeds": 2, "strategies": "rand,g-rand"}, jobs=2)
    entry = manifest["notebooks"]["03 seeds=2 strategies=rand,g-rand"]
    assert [(p["dataset"], p["seeds"], p["rc"]) for p in entry["parts"]] == [("synbols-utk", [0], 0),
                                                                            ("synbols-utk", [1], 0)]
    assert entry["parameters"]["run"] is True and entry["jobs"] == 2 and entry["wall_s"] >= entry["draw_wall_s"]
    runs = sorted(p.name.split("-s")[0] + p.name.split("-s")[1][0]
                  for p in (tmp_path / "res" / "jin" / "synbols-utk").glob("*.json"))
    assert runs == ["g-rand0", "g-rand1", "init-at0", "init-at1", "rand0", "rand1"]
    table = (tmp_path / "fig" / "03_table1_synbols-utk.md").read_text()
    assert "| RAND |" in table and table.splitlines()[2].rstrip().endswith("| 2 |")  # both seeds drawn


def test_jobs_refuses_a_notebook_it_cannot_split(tmp_path):
    from fralkit.reproduce import reproduce

    with pytest.raises(ValueError, match="runs as one process"):
        reproduce("smoke", only=["02"], out=tmp_path, jobs=2)
    assert not (tmp_path / "manifest.json").exists()


def test_jobs_reports_a_failed_part_after_drawing_what_exists(tmp_path):
    from fralkit.reproduce import reproduce

    missing = str(tmp_path / "no-such-download")
    with pytest.raises(NotebookFailed, match=r"1 part\(s\) failed .*log.txt"):
        reproduce("smoke", only=["03"], out=tmp_path / "fig", executed=tmp_path / "ex", results=tmp_path / "res",
                  overrides={"dataset": "utkface", "data_root": missing, "strategies": "rand"}, jobs=2)
    manifest = json.loads((tmp_path / "fig" / "manifest.json").read_text())
    (entry,) = manifest["notebooks"].values()  # the drawing ran (nothing to draw) and was recorded
    assert [p["rc"] != 0 for p in entry["parts"]] == [True]
    assert "no-such-download" in Path(entry["parts"][0]["log"]).read_text()  # the loader names the bad path


def _probe_notebook(folder: Path, code: str) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("x"), nbformat.v4.new_code_cell("profile = 'quick'"),
                nbformat.v4.new_code_cell(code)]
    nb.cells[1].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / "01_data.ipynb"))
    return folder / "01_data.ipynb"


def test_plain_papermill_is_recognised_as_batch(tmp_path):
    """No flag, no FRALKIT_BATCH: the kernel knows papermill started it, so widget cells skip."""
    import os
    import subprocess
    import sys

    path = _probe_notebook(tmp_path, "import fralkit as fk\nprint('batch:', fk.utils.in_papermill())")
    env = {k: v for k, v in os.environ.items() if k != "FRALKIT_BATCH"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    subprocess.run([sys.executable, "-m", "papermill", str(path), str(tmp_path / "out.ipynb"), "-p", "profile", "smoke",
                    "--no-progress-bar"], check=True, env=env, capture_output=True)
    out = json.loads((tmp_path / "out.ipynb").read_text())
    assert "batch: True" in "".join(out["cells"][-1]["outputs"][0]["text"])


def test_runner_kernel_logs_no_transport_warning(tmp_path, capfd):
    path = _probe_notebook(tmp_path / "nbs", "1 + 1")
    run_notebook("01", path, "smoke", executed_dir=tmp_path / "ex", figures=tmp_path / "fig", log_output=False)
    err = capfd.readouterr().err
    assert "without encryption" not in err


def test_figures_dir_writes_committed_figures_only_for_committed_reproduce_runs(monkeypatch, tmp_path):
    from fralkit.utils import figures_dir

    monkeypatch.delenv("FRALKIT_FIGURES", raising=False)
    monkeypatch.delenv("FRALKIT_PROFILE", raising=False)
    assert figures_dir("gpu", reproduce=True) == ROOT / "figures"
    assert figures_dir("paper", reproduce=True) == ROOT / "figures"
    assert figures_dir("quick", reproduce=True) == ROOT / "runs" / "quick" / "figures"
    assert figures_dir("gpu") == ROOT / "runs" / "gpu" / "figures"  # JupyterLab / plain papermill on gpu
    assert figures_dir() == ROOT / "runs" / "quick" / "figures"
    monkeypatch.setenv("FRALKIT_PROFILE", "smoke")  # what a notebook's set-up cell records
    assert figures_dir() == ROOT / "runs" / "smoke" / "figures"
    monkeypatch.setenv("FRALKIT_FIGURES", str(tmp_path / "elsewhere"))
    assert figures_dir("gpu", reproduce=True) == tmp_path / "elsewhere"


def test_readme_and_notebooks_name_the_papers():
    """The papers by name ("JIN (Wu et al.)", "FARMUR (Mousavi et al.)", ...), never by number ("paper 004")."""
    import re

    for path in [ROOT / "README.md", *ALL]:
        found = re.findall(r"[Pp]aper[ _]?00\d", path.read_text())
        assert not found, f"{path.name}: papers named by number {found}"
    readme = (ROOT / "README.md").read_text()
    for name in ("JIN (Wu et al.)", "FARMUR (Mousavi et al.)", "FairAT (Mou et al.)",
                 "BALD+GRAD (Branchaud-Charron et al.)"):
        assert name in readme, name
