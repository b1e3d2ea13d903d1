"""fralkit.reproduce: arguments checked before any work, kernel-start retry, the manifest merged under a lock,
parts through submitit (local slots per GPU, SLURM parameters), stale temporary files cleared at start."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

import fralkit.reproduce as rp
from fralkit.profiles import check_overrides, notebook_parameters
from fralkit.reproduce import (KernelNotStarted, NotebookFailed, local_slots, main, make_executor,
                               reproduce, run_notebook, update_manifest, visible_gpus)

ROOT = Path(__file__).resolve().parent.parent


def _notebook(folder: Path, name: str, code: str) -> Path:
    """A tiny notebook: a markdown cell, the tagged parameters cell, then ``code``."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("x"), nbformat.v4.new_code_cell("profile = 'quick'"),
                nbformat.v4.new_code_cell(code)]
    nb.cells[1].metadata["tags"] = ["parameters"]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / name))
    return folder / name


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err  # one line, no traceback
    return err[0]


# --- every argument checked before any work ---------------------------------------------------------------

@pytest.mark.parametrize("item, message", [
    ("n=abc", "--set n=abc: n takes an int, got 'abc'"),
    ("n=2.5", "--set n=2.5: n takes an int, got 2.5"),
    ("n=True", "n takes an int, got True"),
    ("lr=fast", "lr takes a number, got 'fast'"),
    ("run=1", "run takes a bool (True or False), got 1"),
    ("data_root=5", "data_root takes a string or None, got 5"),
    ("seeds=0", "seeds takes a number of seeds (an int >= 1) or a list of seeds >= 0"),
    ("seeds=[0, -1]", "seeds takes a number of seeds"),
    ("seeds=abc", "seeds takes a number of seeds"),
])
def test_a_set_value_of_the_wrong_type_fails_at_once_naming_the_parameter(tmp_path, capsys, item, message):
    out = tmp_path / "out"
    start = time.time()
    assert main(["reproduce", "--profile", "smoke", "--only", "03", "--set", item, "--out", str(out)]) == 1
    assert message in _error_line(capsys)
    assert time.time() - start < 5 and not out.exists()  # no kernel started, no folder made


def test_set_values_of_the_right_type_pass():
    check_overrides("03", {"n": 10, "lr": 1, "data_root": None, "seeds": [0, 2], "run": False,
                           "dataset": "synbols-cinic", "profile": "smoke"})
    check_overrides("02", {"data_root": "../data", "data_seed": 3, "seeds": 2})
    with pytest.raises(ValueError, match="data_seed takes a seed >= 0"):
        check_overrides("02", {"data_seed": -1})
    with pytest.raises(ValueError, match=r"seeds takes a number of seeds \(an int >= 1\), got \[0\]"):
        check_overrides("01", {"seeds": [0]})  # notebook 01 counts its seeds with range()


def test_an_out_under_a_file_fails_in_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["reproduce", "--profile", "smoke", "--only", "01", "--out", str(tmp_path / "file" / "out")]) == 1
    assert "--out " in (line := _error_line(capsys)) and "cannot create the folder" in line
    assert main(["reproduce", "--profile", "smoke", "--only", "01", "--out", str(tmp_path / "out"),
                 "--results", str(tmp_path / "file")]) == 1
    assert "the result store" in _error_line(capsys)
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_fails_before_any_work(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["reproduce", "--profile", "smoke", "--only", "01", "--out", str(ro)]) == 1
        assert "is not writable" in _error_line(capsys)
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("argv, message", [
    (["--jobs", "0"], "--jobs must be >= 1 or auto"),
    (["--jobs", "2", "--only", "02"], "runs as one process"),
    (["--jobs", "2", "--parts-per-gpu", "2"], "--parts-per-gpu goes with --jobs auto"),
    (["--jobs", "2", "--slurm-partition", "gpu"], "go with --engine slurm"),
    (["--jobs", "auto", "--gpus", "none"], "--jobs auto runs one part per GPU and found no GPU"),
    (["--slurm-option", "account"], "--slurm-option takes KEY=VALUE"),
])
def test_bad_part_options_fail_before_any_work(tmp_path, capsys, argv, message):
    argv = ["reproduce", "--profile", "smoke", "--out", str(tmp_path / "out"), *argv]
    if "--only" not in argv:
        argv += ["--only", "03"]
    assert main(argv) == 1
    assert message in _error_line(capsys)
    assert not (tmp_path / "out").exists()


# --- kernel start --------------------------------------------------------------------------------------

def test_a_kernel_that_does_not_start_is_tried_once_more(tmp_path, monkeypatch):
    import papermill as pm

    nb = _notebook(tmp_path / "nbs", "01_data.ipynb", "x = 1")
    real, calls = pm.execute_notebook, []

    def flaky(*args, **kwargs):
        calls.append(kwargs["start_timeout"])
        if len(calls) == 1:
            raise RuntimeError("Kernel didn't respond in 60 seconds")
        return real(*args, **kwargs)

    monkeypatch.setattr(pm, "execute_notebook", flaky)
    entry = run_notebook("01", nb, "smoke", executed_dir=tmp_path / "ex", figures=tmp_path / "fig", log_output=False)
    assert calls == [rp.KERNEL_START_TIMEOUT_S] * 2 and entry["kernel_tries"] == 2


def test_a_failed_html_export_is_recorded_and_does_not_stop_the_run(tmp_path, monkeypatch, capsys):
    nb = _notebook(tmp_path / "nbs", "01_data.ipynb", "x = 1")

    def no_template(_notebook):
        raise ValueError("No template sub-directory with name 'lab' found in the following paths:\n\t/usr/share")

    monkeypatch.setattr(rp, "export_html", no_template)
    entry = run_notebook("01", nb, "smoke", executed_dir=tmp_path / "ex", figures=tmp_path / "fig", log_output=False)
    assert entry["html"] is None and entry["html_error"].startswith("ValueError: No template sub-directory")
    assert (tmp_path / "ex" / "01_data.ipynb").exists()  # the executed copy is kept
    assert "HTML export failed" in capsys.readouterr().out


def test_a_kernel_that_fails_to_start_twice_stops_the_run_non_zero(tmp_path, monkeypatch, capsys):
    import papermill as pm

    _notebook(tmp_path / "nbs", "01_data.ipynb", "x = 1")
    calls = []

    def dead(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("Kernel didn't respond in 300 seconds")

    monkeypatch.setattr(pm, "execute_notebook", dead)
    with pytest.raises(KernelNotStarted, match=r"01_data.ipynb: the kernel did not start, 2 tries \(RuntimeError"):
        run_notebook("01", tmp_path / "nbs" / "01_data.ipynb", "smoke", executed_dir=tmp_path / "ex",
                     figures=tmp_path / "fig", log_output=False)
    assert len(calls) == 2
    assert main(["reproduce", "--profile", "smoke", "--only", "01", "--notebooks", str(tmp_path / "nbs"),
                 "--out", str(tmp_path / "fig"), "--executed", str(tmp_path / "ex")]) == 1
    assert "the kernel did not start" in _error_line(capsys)


def test_a_kernel_that_dies_after_its_first_cell_is_not_run_again(tmp_path, monkeypatch):
    import papermill as pm

    nb = _notebook(tmp_path / "nbs", "01_data.ipynb", "x = 1")
    calls = []

    def dies(input_path, output_path, **kwargs):
        calls.append(1)
        ran = nbformat.read(input_path, as_version=4)
        ran.cells[1].execution_count = 1
        nbformat.write(ran, output_path)
        raise RuntimeError("Kernel died")

    monkeypatch.setattr(pm, "execute_notebook", dies)
    with pytest.raises(NotebookFailed, match="the kernel stopped during the run") as err:
        run_notebook("01", nb, "smoke", executed_dir=tmp_path / "ex", figures=tmp_path / "fig", log_output=False)
    assert len(calls) == 1 and not isinstance(err.value, KernelNotStarted)


# --- the manifest, merged under a lock ------------------------------------------------------------------

def test_concurrent_writers_keep_every_manifest_entry(tmp_path):
    """Threads writing through update_manifest at once: each opens the lock file itself, as a process would."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "fig" / "manifest.json"

    def write(name: str) -> None:
        for i in range(30):
            update_manifest(path, f"{name}-{i}", {"finished_at": "t", "i": i})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, "abcd"))
    got = json.loads(path.read_text())["notebooks"]
    assert sorted(got) == sorted(f"{n}-{i}" for n in "abcd" for i in range(30))


def test_a_corrupt_manifest_is_moved_aside(tmp_path, capsys):
    path = tmp_path / "manifest.json"
    path.write_text('{"notebooks": {"01": ')
    merged = update_manifest(path, "02", {"finished_at": "t"})
    assert list(merged["notebooks"]) == ["02"] and (tmp_path / "manifest.json.corrupt").exists()
    assert "moved to manifest.json.corrupt" in capsys.readouterr().err


def test_two_concurrent_reproduce_runs_into_one_out_keep_both_entries(tmp_path):
    """Issue 18: `--only 05` and `--only 03` at once left only one entry."""
    nbs = tmp_path / "nbs"
    for key in ("01", "02"):
        _notebook(nbs, rp.NOTEBOOKS[key], "import time\ntime.sleep(1)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-m", "fralkit", "reproduce", "--profile", "smoke", "--only", key,
                               "--notebooks", str(nbs), "--out", str(tmp_path / "fig"),
                               "--executed", str(tmp_path / f"ex{key}"), "--results", str(tmp_path / "res")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for key in ("01", "02")]
    errs = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert sorted(json.loads((tmp_path / "fig" / "manifest.json").read_text())["notebooks"]) == ["01", "02"]


# --- start of a run: stale temporaries, the umask, the corrupt-record switch ---------------------------------

def test_a_run_clears_stale_temporaries_follows_the_umask_and_passes_recompute_corrupt(tmp_path):
    out, res = tmp_path / "fig", tmp_path / "res"
    old = time.time() - 2 * 3600
    stale = [out / ".03_table.md.abc123.tmp", res / "jin" / "d" / ".rand-s0-1.json.k9.tmp"]
    fresh = res / ".init.pt.zz1.tmp"  # another run writing now
    for p in [*stale, fresh]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    for p in stale:
        os.utime(p, (old, old))
    nbs = tmp_path / "nbs"
    _notebook(nbs, "01_data.ipynb", "import os, pathlib\n"
              "pathlib.Path(os.environ['FRALKIT_FIGURES'], '01_flag.txt').write_text("
              "os.environ.get('FRALKIT_RECOMPUTE_CORRUPT', 'unset'))")
    mask = os.umask(0o027)
    try:
        reproduce("smoke", only=["01"], out=out, executed=tmp_path / "ex", results=res, notebooks_dir=nbs,
                  recompute_corrupt=True)
    finally:
        os.umask(mask)
    assert not any(p.exists() for p in stale) and fresh.exists()
    assert (out / "01_flag.txt").read_text() == "1"
    assert (out / "manifest.json").stat().st_mode & 0o777 == 0o640


# --- parts through submitit ---------------------------------------------------------------------------

def test_local_slots_one_per_gpu_several_per_gpu_or_cpu():
    assert local_slots("auto", ["0", "1", "2"]) == ["0", "1", "2"]
    assert local_slots("auto", ["3", "5"], parts_per_gpu=2) == ["3", "5", "3", "5"]
    assert local_slots(6, ["0"]) == ["0"] * 6  # six parts sharing one GPU
    assert local_slots(3, ["0", "1"]) == ["0", "1", "0"]
    assert local_slots(2, []) == ["", ""]  # CPU mode: no GPU visible to the parts
    with pytest.raises(ValueError, match="found no GPU"):
        local_slots("auto", [])


def test_visible_gpus_are_read_at_run_time(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert visible_gpus("auto") == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus("auto") == []
    assert visible_gpus("none") == [] and visible_gpus("1, 3") == ["1", "3"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    import torch

    assert len(visible_gpus("auto")) == torch.cuda.device_count()


def test_each_local_part_sees_its_slots_gpu(tmp_path):
    """Two parts on two 'GPUs': each part's process gets its slot's CUDA_VISIBLE_DEVICES; the manifest says which."""
    nbs = tmp_path / "nbs"
    _notebook(nbs, rp.NOTEBOOKS["03"], "import os, pathlib\n"
              "if run:\n"
              "    pathlib.Path(os.environ['FRALKIT_RESULTS'], f'{dataset}-{seeds[0]}.txt').write_text("
              "os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))")
    manifest = reproduce("smoke", only=["03"], out=tmp_path / "fig", executed=tmp_path / "ex",
                         results=tmp_path / "res", notebooks_dir=nbs, overrides={"seeds": 2}, jobs=2, gpus="7,9")
    (entry,) = manifest["notebooks"].values()
    parts = {p["seeds"][0]: p for p in entry["parts"]}
    assert {s: p["cuda_visible_devices"] for s, p in parts.items()} == {0: "7", 1: "9"}
    for s, p in parts.items():
        assert p["rc"] == 0 and p["wall_s"] > 0 and Path(p["log"]).exists() and p["engine"] == "local"
        assert (tmp_path / "res" / f"synbols-utk-{s}.txt").read_text() == p["cuda_visible_devices"]


def test_slurm_parameters_reach_the_sbatch_script(tmp_path, monkeypatch):
    srun = tmp_path / "bin" / "srun"  # submitit looks for srun to know it is on a cluster
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}{os.pathsep}{os.environ['PATH']}")
    executor = make_executor("slurm", tmp_path / "sub" / "%j", jobs=4,
                             slurm={"partition": "gpu", "gpus_per_node": 1, "time": 600, "account": "lab"})
    script = executor._executor._make_submission_file_text("python -m x", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=600",
                 "#SBATCH --account=lab"):
        assert line in script
    assert executor._executor.parameters["array_parallelism"] == 4
    with pytest.raises(ValueError, match="--slurm-option: .*nonsense"):
        make_executor("slurm", tmp_path / "sub" / "%j", slurm={"nonsense": 1})


def test_slurm_off_a_cluster_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    with pytest.raises(ValueError, match="--engine slurm: .*srun"):
        make_executor("slurm", tmp_path / "sub" / "%j")


def test_a_real_kernel_that_misses_its_start_timeout_gets_a_second_try(tmp_path, monkeypatch):
    """Through papermill itself: a ``python3`` kernel that hangs on its first start and starts on the second."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    marker = tmp_path / "first-start"
    launch = (f"if [ -e {marker} ]; then exec {sys.executable} -m ipykernel_launcher -f \"$0\"; "
              f"else touch {marker}; exec sleep 30; fi")
    (spec / "kernel.json").write_text(json.dumps({"argv": ["sh", "-c", launch, "{connection_file}"],
                                                  "display_name": "flaky", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setattr(rp, "KERNEL_START_TIMEOUT_S", 5)
    nb = _notebook(tmp_path / "nbs", "01_data.ipynb", "x = 41 + 1")
    entry = run_notebook("01", nb, "smoke", executed_dir=tmp_path / "ex", figures=tmp_path / "fig", log_output=False)
    assert marker.exists() and entry["kernel_tries"] == 2
    ran = nbformat.read(str(tmp_path / "ex" / "01_data.ipynb"), as_version=4)
    assert all(c.execution_count is not None for c in ran.cells if c.cell_type == "code")


def test_notebooks_01_and_04_split_into_parts_and_the_others_run_whole(tmp_path):
    assert set(rp.SPLITTABLE) == {"01", "03", "04"}
    assert rp.split_parts("01", notebook_parameters("01", "gpu")) == [
        {"datasets": name} for name in ("synbols-utk", "synbols-cinic", "synbols-ham")]  # the presets with searches
    parts04 = rp.split_parts("04", {**notebook_parameters("04", "smoke"), "seeds": 2})
    assert parts04 == [{"rows": r, "seeds": [s]} for r in ("lenet5-mnist", "utkclassifier-utkface") for s in (0, 1)]
    assert [rp.part_name(p) for p in parts04[:2]] == ["lenet5-mnist-s0", "lenet5-mnist-s1"]
    assert rp.part_name({"dataset": "synbols-utk", "seeds": [2]}) == "synbols-utk-s2"
    assert rp.part_name({"rows": "resnet18-cifar10:small_cnn", "seeds": [0]}) == "resnet18-cifar10_small_cnn-s0"
    with pytest.raises(ValueError, match="unknown FARMUR row"):
        rp.split_parts("04", {"rows": "vgg-svhn", "seeds": 1})


def test_a_split_run_runs_the_unsplittable_notebooks_whole(tmp_path):
    nbs = tmp_path / "nbs"
    _notebook(nbs, rp.NOTEBOOKS["02"], "x = 1")
    _notebook(nbs, rp.NOTEBOOKS["04"], "import os, pathlib\n"
              "if run:\n"
              "    pathlib.Path(os.environ['FRALKIT_RESULTS'], f'{rows}-{seeds[0]}.txt').write_text('x')")
    manifest = reproduce("smoke", only=["02", "04"], out=tmp_path / "fig", executed=tmp_path / "ex",
                         results=tmp_path / "res", notebooks_dir=nbs, jobs=2, gpus="none")
    entries = manifest["notebooks"]
    assert "parts" not in entries["02"] and len(entries["04"]["parts"]) == 2
    assert sorted(p.name for p in (tmp_path / "res").glob("*.txt")) == ["lenet5-mnist-0.txt",
                                                                         "utkclassifier-utkface-0.txt"]
    assert entries["04"]["parameters"]["run"] is True  # what the parts ran; the drawing pass drew (run=False)


def test_local_parts_never_outnumber_the_slots_and_reuse_a_freed_one(tmp_path, monkeypatch):
    """The scheduling alone, with a stand-in executor whose jobs finish after a few polls."""
    monkeypatch.setattr(rp.time, "sleep", lambda s: None)
    running, peak, order = [], [0], []

    class Job:
        def __init__(self, env, n):
            self.env, self.polls, self.job_id = env, n, str(len(order))
            self.paths = None

        def done(self):
            self.polls -= 1
            if self.polls <= 0 and self in running:
                running.remove(self)
            return self.polls <= 0

        def result(self):
            return {"rc": 0, "wall_s": 1.0, "host": "h"}

    class Executor:
        def submit(self, fn, cmd, log, env):
            assert fn is rp.run_part and "--set" in cmd
            job = Job(env, n=2 + len(order) % 3)
            order.append(env["CUDA_VISIBLE_DEVICES"])
            running.append(job)
            peak[0] = max(peak[0], len(running))
            return job

    parts = [{"dataset": "synbols-utk", "seeds": [s]} for s in range(5)]
    out = rp._run_parts("03", "smoke", parts, {"seeds": 5}, executor=Executor(), engine="local", slots=["0", "1"],
                        results=tmp_path / "res", executed_dir=tmp_path / "ex", notebooks_dir=None)
    assert peak[0] == 2 and len(order) == 5 and set(order) == {"0", "1"}
    assert [p["seeds"] for p in out] == [[s] for s in range(5)] and all(p["rc"] == 0 for p in out)
    assert [p["cuda_visible_devices"] for p in out] == order


def test_the_kernel_keeps_a_set_value_that_equals_the_quick_one(tmp_path):
    """``reproduce --profile gpu --only 03 --set dataset=synbols-utk --set table7=`` (a part of ``--jobs``): in the
    kernel the notebook's ``apply`` resolves one data set and no Table 7, not the gpu profile's three and its
    ResNet-18 runs, though both values equal the parameters cell's."""
    out = tmp_path / "resolved.json"
    code = ("import json\nimport fralkit as fk\np = fk.profiles.apply('03', globals())\n"
            f"open({str(out)!r}, 'w').write(json.dumps([p['dataset'], p['table7'], p['n']]))")
    nb = _notebook(tmp_path / "nbs", "03_jin_vs_baselines.ipynb", code)
    run_notebook("03", nb, "gpu", executed_dir=tmp_path / "ex", figures=tmp_path / "fig", log_output=False,
                 extra={"dataset": "synbols-utk", "table7": ""})
    assert json.loads(out.read_text()) == ["synbols-utk", "", notebook_parameters("03", "gpu")["n"]]
