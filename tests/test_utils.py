"""fralkit.utils: atomic writes that follow the umask, checkpoint loading that names the file, stale temp files."""
import os
import time

import pytest
import torch

from fralkit.utils import (CorruptFileError, atomic_torch_save, atomic_write_bytes, atomic_write_json, load_checkpoint,
                           remove_stale_tmp)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {"b": 1})
        atomic_torch_save({"w": torch.ones(2)}, tmp_path / "m.pt")
    finally:
        os.umask(old)
    for name in ("a.json", "m.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_load_checkpoint_roundtrip_and_a_truncated_file_names_its_path(tmp_path):
    path = tmp_path / "_state" / "jin-s0.pt"
    atomic_torch_save({"round": 3, "w": torch.arange(4.0)}, path)
    state = load_checkpoint(path)
    assert state["round"] == 3 and torch.equal(state["w"], torch.arange(4.0))
    path.write_bytes(path.read_bytes()[:40])  # a killed copy
    with pytest.raises(CorruptFileError, match=rf"checkpoint {path} cannot be loaded .*delete it") as err:
        load_checkpoint(path)
    assert err.value.path == path and isinstance(err.value, ValueError)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=str(path)):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pt")


def test_remove_stale_tmp_keeps_fresh_temporaries_and_other_files(tmp_path):
    old = time.time() - 2 * 3600
    stale = tmp_path / "jin" / ".a.json.k2j3h4.tmp"
    fresh = tmp_path / ".b.pt.x9y8z7.tmp"  # a write in progress in another run
    keep = [tmp_path / "jin" / "a.json", tmp_path / "notes.tmp", tmp_path / ".hidden"]
    for p in [stale, fresh, *keep]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    for p in [stale, *keep]:
        os.utime(p, (old, old))
    assert remove_stale_tmp(tmp_path) == [stale]
    assert not stale.exists() and fresh.exists() and all(p.exists() for p in keep)
    assert remove_stale_tmp(tmp_path / "absent") == []


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "x.bin", object())
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_training_checkpoint_is_named_by_fit(tmp_path, tiny_groups):
    from fralkit.train import fit

    ckpt = tmp_path / "_state" / "fit.pt"
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
    fit(model, tiny_groups, epochs=1, batch_size=16, lr=0.05, seed=0, device="cpu", checkpoint=ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(CorruptFileError, match=str(ckpt)):
        fit(model, tiny_groups, epochs=1, batch_size=16, lr=0.05, seed=0, device="cpu", checkpoint=ckpt)


def test_truncated_state_and_cache_files_of_the_active_loop_are_named(tmp_path, tiny_groups, monkeypatch):
    import fralkit.active.loop as loop
    from fralkit.data import DataSplits
    from fralkit.experiments import ResultStore

    monkeypatch.setattr(loop, "_make_model", lambda config, train: torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, train.num_classes)))
    splits = DataSplits(tiny_groups, tiny_groups, tiny_groups)
    cfg = loop.FRALConfig(dataset="tiny", backbone="tiny", strategy="rand", seed=0, rounds=2, budget_frac=0.1,
                          init_frac=0.25, init_epochs=1, finetune_epochs=1, batch_size=16, std_epochs=1,
                          std_finetune_epochs=1, eval_batch_size=32)
    store = ResultStore(tmp_path)

    def stop(k, state):
        raise loop.FRALInterrupted("cut")

    with pytest.raises(loop.FRALInterrupted):
        loop.run_fral(cfg, store=store, splits=splits, device="cpu", callback=stop)
    (state,) = (tmp_path / "jin" / "_state").rglob("*.pt")
    state.write_bytes(state.read_bytes()[:64])
    with pytest.raises(CorruptFileError, match=str(state)):
        loop.run_fral(cfg, store=store, splits=splits, device="cpu")
    state.unlink()
    (cache,) = (tmp_path / "jin" / "_cache").rglob("*.pt")
    cache.write_bytes(cache.read_bytes()[:64])
    with pytest.raises(CorruptFileError, match=str(cache)):
        loop.run_fral(cfg, store=store, splits=splits, device="cpu")
