"""Real-data loaders on tiny fixture trees written in each data set's official format (CPU, seconds).

Fixture images are solid colours that encode their own labels (red = class, green = group, blue = file
number), so a test can check that every image sits next to its own label after the split.
"""
from __future__ import annotations

import csv
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fralkit.data import DataSplits, load_dataset, real

# The fixtures are far smaller than the official downloads, so every load warns about its counts; the tests of that
# warning record it themselves.
pytestmark = pytest.mark.filterwarnings("ignore:.*where the official download has:UserWarning")

RACE_AGES = (3, 14, 15, 24, 29, 30, 45, 59, 60, 80)  # 5 young / 5 old; two of each FARMUR age bin


def _solid(path: Path, rgb, size=(12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, tuple(int(v) for v in rgb)).save(path, quality=95)


def _ages(x: torch.Tensor) -> torch.Tensor:
    """The age a UTKFace fixture image encodes (green = 25 x its index in RACE_AGES)."""
    return torch.tensor(RACE_AGES)[(x[:, 1, 4, 4].float() / 25).round().long()]


def _all(splits: DataSplits):
    return (torch.cat([d.x for d in splits]), torch.cat([d.y for d in splits]), torch.cat([d.g for d in splits]))


# --------------------------------------------------------------------------------------------------------
# UTKFace
# --------------------------------------------------------------------------------------------------------

@pytest.fixture
def utk_root(tmp_path):
    """``tmp/UTKFace/``: 40 valid faces (4 races x 10 ages), 2 race-4 faces, 3 malformed names, 1 text file."""
    folder = tmp_path / "UTKFace"
    suffixes = (".jpg.chip.jpg", ".chip.jpg", ".jpg")
    k = 0
    for race in range(4):
        for a, age in enumerate(RACE_AGES):
            _solid(folder / f"{age}_{k % 2}_{race}_2017011{k:08d}{suffixes[k % 3]}", (race * 60, a * 25, 100))
            k += 1
    for age in (20, 50):
        _solid(folder / f"{age}_0_4_20170120{age:09d}.jpg.chip.jpg", (250, 250, 250))
    for bad in ("39_1_20170116174525125.jpg.chip.jpg", "abc_0_0_20170101000000000.jpg", "25_0_7_20170101000000000.jpg"):
        _solid(folder / bad, (0, 0, 0))
    (folder / "notes.txt").write_text("not an image")
    return tmp_path


def test_parse_utkface_name_accepts_all_suffixes_and_rejects_malformed():
    assert real.parse_utkface_name("26_1_3_20170119193236083.jpg.chip.jpg") == (26, 1, 3)
    assert real.parse_utkface_name("1_0_0_20161219140623097.chip.jpg") == (1, 0, 0)
    assert real.parse_utkface_name("100_1_4_20170110183726390.jpg") == (100, 1, 4)
    for bad in ("39_1_20170116174525125.jpg.chip.jpg", "a_0_0_1.jpg", "20_2_0_1.jpg", "20_0_5_1.jpg", "20_0_0_1.png"):
        assert real.parse_utkface_name(bad) is None, bad


def test_utkface_jin_labels_groups_and_counts(utk_root):
    with pytest.warns(UserWarning, match="skipped 3 file"):
        splits = real.load_utkface(utk_root, seed=0, size=8)
    assert splits.sizes() == {"train": 28, "val": 4, "test": 8}  # 40 x (0.7, 0.1, 0.2)
    tr = splits.train
    assert tr.x.dtype == torch.uint8 and tr.x.shape[1:] == (3, 8, 8)
    assert tr.classes == ["White", "Black", "Asian", "Indian"] and tr.groups == ["young", "old"]
    assert tr.meta["skipped"] == 3 and tr.meta["dropped_others"] == 2 and tr.meta["task"] == "jin"
    assert tr.meta["source"].endswith("UTKFace")
    x, y, g = _all(splits)
    # every race has 5 faces under 30 (3..29) and 5 of 30 or more
    assert torch.equal(sum(d.counts() for d in splits), torch.full((4, 2), 5))
    assert torch.equal((x[:, 0, 4, 4].float() / 60).round().long(), y)
    assert torch.equal((_ages(x) >= 30).long(), g)


def test_utkface_farmur_age_bins_and_race_partitions(utk_root):
    with pytest.warns(UserWarning):
        splits = real.load_utkface(utk_root, seed=1, size=8, task="farmur")
    assert splits.train.classes == ["0-15", "15-25", "25-40", "40-60", "60+"]
    assert splits.train.groups == ["White", "Black", "Asian", "Indian"]
    # ages 3,14 | 15,24 | 29,30 | 45,59 | 60,80: two per bin for every race
    assert torch.equal(sum(d.counts() for d in splits), torch.full((5, 4), 2))
    x, y, g = _all(splits)
    assert torch.equal((x[:, 0, 4, 4].float() / 60).round().long(), g)
    expected_bin = torch.bucketize(_ages(x), torch.tensor([15, 25, 40, 60]), right=True)
    assert torch.equal(expected_bin, y)


def test_utkface_same_seed_same_split_other_seed_differs(utk_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = real.load_utkface(utk_root, seed=3, size=8), real.load_utkface(utk_root, seed=3, size=8)
        c = real.load_utkface(utk_root, seed=4, size=8)
    for da, db in zip(a, b):
        assert torch.equal(da.x, db.x) and torch.equal(da.y, db.y) and torch.equal(da.g, db.g)
    assert not torch.equal(a.test.x, c.test.x)


def test_utkface_images_in_root_stratify_fracs_and_folder_choice(utk_root):
    folder = utk_root / "UTKFace"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = real.load_utkface(folder, size=8, fracs=(0.6, 0.2, 0.2), stratify=True)
    # stratified: each (race, age group) cell of 5 faces gives 3 / 1 / 1
    assert direct.sizes() == {"train": 24, "val": 8, "test": 8}
    assert torch.equal(direct.train.counts(), torch.full((4, 2), 3))
    assert torch.equal(direct.test.counts(), torch.ones(4, 2, dtype=torch.int64))
    # a second image folder: UTKFace/ is preferred, with a warning; folder= picks the other
    _solid(utk_root / "crop_part1" / "40_0_1_20170101000000001.jpg.chip.jpg", (60, 80, 100))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(_all(real.load_utkface(utk_root, size=8))[1]) == 40
    assert any("several image folders" in str(w.message) and "folder=" in str(w.message) for w in caught)
    only = real.load_utkface(utk_root, size=8, folder="crop_part1", fracs=(1.0, 0.0, 0.0))
    assert only.sizes() == {"train": 1, "val": 0, "test": 0} and only.train.y.tolist() == [1]


def test_utkface_unreadable_image_is_counted(tmp_path):
    _solid(tmp_path / "20_0_0_20170101000000001.jpg", (0, 40, 100))
    _solid(tmp_path / "40_1_2_20170101000000002.jpg", (120, 80, 100))
    (tmp_path / "30_1_1_20170101000000003.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="could not be decoded"):
        splits = real.load_utkface(tmp_path, size=4, fracs=(1.0, 0.0, 0.0))
    assert splits.train.meta["unreadable"] == 1
    assert splits.train.y.tolist() == [0, 2] and splits.train.g.tolist() == [0, 1]


def test_utkface_cache_gives_identical_images(utk_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = real.load_utkface(utk_root, size=8, cache=True)
        second = real.load_utkface(utk_root, size=8, cache=True, task="farmur")
    assert not first.train.meta["cached"] and second.train.meta["cached"]
    assert torch.equal(_all(first)[0].sum(0), _all(second)[0].sum(0))


def test_utkface_errors(tmp_path, utk_root):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist.*age.*gender.*race"):
        real.load_utkface(missing)
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no UTKFace images.*\[age\]_\[gender\]_\[race\]"):
        real.load_utkface(empty)
    with pytest.raises(ValueError, match="unknown task 'age'.*jin.*farmur"):
        real.load_utkface(utk_root, task="age")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['n'\].*task"):
        real.load_utkface(utk_root, n=10)
    with pytest.raises(ValueError, match="pass root"):
        real.load_utkface(None)
    with pytest.raises(ValueError, match="root="):
        load_dataset("utkface")


# --------------------------------------------------------------------------------------------------------
# CINIC-10
# --------------------------------------------------------------------------------------------------------

@pytest.fixture
def cinic_root(tmp_path):
    """``tmp/CINIC-10/{train,valid,test}/<class>/``: per class 1 CIFAR-10 and 2 ImageNet images, 1 stray file."""
    base = tmp_path / "CINIC-10"
    k = 0
    for split, cifar_split in (("train", "train"), ("valid", "train"), ("test", "test")):
        for c, cls in enumerate(real.CINIC10_CLASSES):
            d = base / split / cls
            _solid(d / f"cifar10-{cifar_split}-{k}.png", (c * 20, 0, k % 256), size=(32, 32))
            _solid(d / f"n0{2130308 + c}_{k}.png", (c * 20, 200, k % 256), size=(32, 32))
            _solid(d / f"n0{2130308 + c}_{k + 1}.png", (c * 20, 200, (k + 1) % 256), size=(32, 32))
            k += 2
    _solid(base / "train" / "cat" / "stray.png", (0, 0, 0), size=(32, 32))
    return tmp_path


def test_cinic10_groups_from_file_names(cinic_root):
    with pytest.warns(UserWarning, match="skipped 1 file"):
        splits = load_dataset("cinic10", root=cinic_root, seed=0)
    assert splits.sizes() == {"train": 30, "val": 30, "test": 30}
    for ds in splits:
        assert ds.x.shape[1:] == (3, 32, 32) and ds.groups == ["cifar10", "imagenet"]
        assert ds.classes == list(real.CINIC10_CLASSES)
        assert torch.equal(ds.counts(), torch.tensor([[1, 2]] * 10))
        assert torch.equal(ds.g, (ds.x[:, 1, 0, 0] > 100).long())
        assert torch.equal(ds.y, (ds.x[:, 0, 0, 0].float() / 20).round().long())
    assert splits.train.meta["skipped"] == 1 and splits.val.meta["split"] == "val"


def test_cinic10_max_per_split_is_seeded(cinic_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = real.load_cinic10(cinic_root, seed=5, size=8, max_per_split=7)
        b = real.load_cinic10(cinic_root, seed=5, size=8, max_per_split=7)
        c = real.load_cinic10(cinic_root, seed=6, size=8, max_per_split=7)
    assert a.sizes() == {"train": 7, "val": 7, "test": 7} and a.train.x.shape[1:] == (3, 8, 8)
    for da, db in zip(a, b):
        assert torch.equal(da.x, db.x) and torch.equal(da.y, db.y) and torch.equal(da.g, db.g)
    assert any(not torch.equal(da.x, dc.x) for da, dc in zip(a, c))


def test_cinic10_wrong_layout_errors(tmp_path, cinic_root):
    with pytest.raises(FileNotFoundError, match="train/, valid/ and test/.*airplane"):
        real.load_cinic10(tmp_path / "CINIC-10" / "train")
    import shutil

    shutil.rmtree(cinic_root / "CINIC-10" / "test" / "truck")
    with pytest.raises(FileNotFoundError, match=r"\['truck'\] missing.*test"):
        real.load_cinic10(cinic_root)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        real.load_cinic10(tmp_path / "absent")


@pytest.mark.parametrize("lost", ["train", "valid", "test"])
def test_cinic10_names_the_missing_split_folder(cinic_root, lost):
    import shutil

    shutil.rmtree(cinic_root / "CINIC-10" / lost)
    for root in (cinic_root, cinic_root / "CINIC-10"):  # the parent or the download folder itself
        with pytest.raises(FileNotFoundError, match=rf"folder\(s\) {lost}/ missing in '.*CINIC-10'"):
            real.load_cinic10(root)


# --------------------------------------------------------------------------------------------------------
# HAM10000
# --------------------------------------------------------------------------------------------------------

HAM_N = 60  # usable lesions in the fixture


@pytest.fixture
def ham_root(tmp_path):
    """60 usable lesions over both part folders, plus a duplicate image, 2 rows without sex and 1 missing file."""
    rows = []
    for i in range(HAM_N):
        dx = real.HAM10000_CLASSES[i % 7]
        sex = ("male", "female")[(i // 7) % 2]
        rows.append((f"HAM_{i:07d}", f"ISIC_{100 + i:07d}", dx, "histo", "50.0", sex, "back"))
    rows.append(("HAM_0000000", f"ISIC_{900:07d}", "nv", "histo", "50.0", "male", "back"))  # second image of lesion 0
    rows.append(("HAM_0000500", "ISIC_0000500", "mel", "histo", "40.0", "unknown", "face"))
    rows.append(("HAM_0000501", "ISIC_0000501", "bkl", "histo", "", "", "face"))
    rows.append(("HAM_0000502", "ISIC_0000502", "df", "consensus", "40.0", "female", "face"))  # image never written
    with open(tmp_path / "HAM10000_metadata.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(real.HAM10000_COLUMNS)
        w.writerows(rows)
    for lesion, image_id, dx, _, _, sex, _ in rows:
        if image_id == "ISIC_0000502":
            continue
        part = "HAM10000_images_part_1" if int(image_id[5:]) % 2 else "HAM10000_images_part_2"
        dup = 255 if image_id == f"ISIC_{900:07d}" else 0
        y = real.HAM10000_CLASSES.index(dx)
        g = 1 if sex == "female" else 0
        _solid(tmp_path / part / f"{image_id}.jpg", (y * 30, g * 200, dup), size=(16, 12))
    return tmp_path


def test_ham10000_dedup_drop_missing_and_7_3_split(ham_root):
    with pytest.warns(UserWarning, match="1 image"):
        splits = real.load_ham10000(ham_root, seed=0, size=8)
    meta = splits.train.meta
    assert (meta["rows"], meta["dropped_sex"], meta["duplicates"], meta["missing"]) == (HAM_N + 4, 2, 1, 1)
    assert meta["missing_examples"] == ["ISIC_0000502"]
    assert splits.sizes() == {"train": 38, "val": 4, "test": 18}  # 60 -> 42 : 18, 10 % of 42 to val
    assert splits.train.classes == list(real.HAM10000_CLASSES) and splits.train.groups == ["male", "female"]
    x, y, g = _all(splits)
    assert len(y) == HAM_N
    assert torch.equal((x[:, 0, 4, 4].float() / 30).round().long(), y)
    assert torch.equal((x[:, 1, 4, 4] > 100).long(), g)
    assert int(x[:, 2, 4, 4].max()) < 100  # lesion 0 kept ISIC_0000100, not its later image ISIC_0000900
    expected = torch.zeros(7, 2, dtype=torch.int64)
    for i in range(HAM_N):
        expected[i % 7, (i // 7) % 2] += 1
    assert torch.equal(sum(d.counts() for d in splits), expected)


def test_ham10000_test_set_independent_of_val_frac_and_seeded(ham_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = real.load_ham10000(ham_root, seed=2, size=8)
        b = real.load_ham10000(ham_root, seed=2, size=8, val_frac=0.3)
        c = real.load_ham10000(ham_root, seed=2, size=8)
        s = real.load_ham10000(ham_root, seed=2, size=8, stratify=True)
    assert torch.equal(a.test.x, b.test.x) and len(b.val) == round(0.3 * 42)
    for da, dc in zip(a, c):
        assert torch.equal(da.x, dc.x) and torch.equal(da.y, dc.y)
    # stratified: within each (dx, sex) cell of n lesions, n - round(0.7 n) go to test
    cells = sum(d.counts() for d in s)
    assert torch.equal(s.test.counts(), cells - torch.from_numpy(np.round(0.7 * cells.numpy())).long())


def test_ham10000_single_images_folder_and_tab_metadata(ham_root, tmp_path_factory):
    other = tmp_path_factory.mktemp("ham_flat")
    (other / "HAM10000").mkdir()
    images = other / "HAM10000" / "images"
    images.mkdir()
    for p in list(ham_root.glob("HAM10000_images_part_*/*.jpg")):
        (images / p.name).write_bytes(p.read_bytes())
    text = (ham_root / "HAM10000_metadata.csv").read_text().replace(",", "\t")
    (other / "HAM10000" / "HAM10000_metadata.tab").write_text(text)
    with pytest.warns(UserWarning):
        splits = real.load_ham10000(other, size=8)
    assert sum(splits.sizes().values()) == HAM_N and splits.train.meta["source"].endswith("HAM10000")


def test_ham10000_errors(tmp_path, ham_root):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="HAM10000_metadata.csv not found.*HAM10000_images_part_1"):
        real.load_ham10000(empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "HAM10000_metadata.csv").write_text("lesion_id,image_id,dx,age\nHAM_1,ISIC_1,nv,40\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['sex'\]"):
        real.load_ham10000(bad)
    (bad / "HAM10000_metadata.csv").write_text("lesion_id,image_id,dx,sex\nHAM_1,ISIC_1,melanoma,male\n")
    with pytest.raises(ValueError, match=r"unknown dx value\(s\) \['melanoma'\]"):
        real.load_ham10000(bad)
    with pytest.raises(ValueError, match="val_frac must lie in"):
        real.load_ham10000(ham_root, val_frac=1.0)


# --------------------------------------------------------------------------------------------------------
# MNIST and CIFAR-10 (torchvision's raw formats)
# --------------------------------------------------------------------------------------------------------

def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX (ubyte) file: magic 0x0000 08 <ndim>, big-endian int32 dims, uint8 data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    for prefix, n in (("train", 100), ("t10k", 10)):
        labels = np.arange(n) % 10
        images = np.broadcast_to((labels * 20 + 5)[:, None, None], (n, 28, 28)).copy()
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return tmp_path


def test_mnist_shapes_labels_and_class_partitions(mnist_root):
    splits = load_dataset("mnist", root=mnist_root, seed=0)
    assert splits.sizes() == {"train": 90, "val": 10, "test": 10}
    for ds in splits:
        assert ds.x.shape[1:] == (1, 28, 28) and ds.x.dtype == torch.uint8
        assert torch.equal(ds.g, ds.y) and ds.classes == ds.groups == [str(d) for d in range(10)]
        assert torch.equal(ds.x[:, 0, 14, 14].long(), ds.y * 20 + 5)
    assert torch.equal(splits.test.y, torch.arange(10))
    small = real.load_mnist(mnist_root, size=14, channels=3, val_frac=0.2, seed=1)
    assert small.train.x.shape[1:] == (3, 14, 14) and len(small.val) == 20
    assert torch.equal(small.val.counts(), 2 * torch.eye(10, dtype=torch.int64))  # stratified by class
    again = real.load_mnist(mnist_root, size=14, channels=3, val_frac=0.2, seed=1)
    assert torch.equal(small.val.y, again.val.y) and torch.equal(small.train.x, again.train.x)


def test_mnist_missing_files_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST/raw.*download=True"):
        real.load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist.*download=True"):
        real.load_mnist(tmp_path / "absent")
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        real.load_mnist(tmp_path, channels=2)


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    """Tiny CIFAR-10 python pickles. torchvision checks the official MD5 sums, so the check is reduced to
    'the file exists' here; reading and parsing the pickles is still torchvision's."""
    import os

    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    def batch(labels):
        labels = np.asarray(labels)
        data = np.zeros((len(labels), 3, 32, 32), dtype=np.uint8)
        data[:, 0] = (labels * 20)[:, None, None]
        data[:, 1] = 100
        data[:, 2] = 200
        return {"batch_label": "fixture", "labels": labels.tolist(), "data": data.reshape(len(labels), 3072),
                "filenames": [f"img_{i}.png" for i in range(len(labels))]}

    for b in range(5):
        with open(base / f"data_batch_{b + 1}", "wb") as fh:
            pickle.dump(batch((np.arange(20) + b) % 10), fh)
    with open(base / "test_batch", "wb") as fh:
        pickle.dump(batch(np.arange(10)), fh)
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": names, "num_cases_per_batch": 10, "num_vis": 3072}, fh)
    return tmp_path


def test_cifar10_shapes_labels_and_channel_order(cifar_root):
    splits = load_dataset("cifar10", root=cifar_root, seed=0)
    assert splits.sizes() == {"train": 90, "val": 10, "test": 10}  # 10 per class, 1 of each to val
    assert splits.train.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for ds in splits:
        assert ds.x.shape[1:] == (3, 32, 32) and torch.equal(ds.g, ds.y) and ds.groups == ds.classes
        assert torch.equal(ds.x[:, 0, 3, 7].long(), ds.y * 20)
        assert (ds.x[:, 1] == 100).all() and (ds.x[:, 2] == 200).all()
    resized = real.load_cifar10(cifar_root, size=16, seed=0)
    assert resized.train.x.shape[1:] == (3, 16, 16) and torch.equal(resized.val.y, splits.val.y)


def test_cifar10_missing_files_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*download=True"):
        real.load_cifar10(tmp_path)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['channels'\]"):
        real.load_cifar10(tmp_path, channels=1)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, None])
def test_load_dataset_rejects_a_bad_seed_before_any_work(seed, cinic_root):
    with pytest.raises(ValueError, match=r"load_dataset\('cinic10'\): seed must be a non-negative integer, got"):
        load_dataset("cinic10", root=cinic_root, seed=seed)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        load_dataset("synbols-utk", seed=seed, n=50)


# --------------------------------------------------------------------------------------------------------
# Counts printed on load, warned about where a full download's count differs
# --------------------------------------------------------------------------------------------------------

COUNT_CASES = {  # loader: (fixture, what the line says, the counts the warning names)
    "utkface": ("utk_root", "train 28 / val 4 / test 8 from 45 image files (40 of race 0-3)",
                ["45 image files where the official download has 23,708"]),
    "cinic10": ("cinic_root", "train 30 / val 30 / test 30 from 30 train, 30 valid, 30 test",
                [f"30 {s} where the official download has 90,000" for s in ("train", "valid", "test")]),
    "ham10000": ("ham_root", "train 38 / val 4 / test 18 from 64 metadata rows, 63 images, 63 lesions "
                 "(one image per lesion, sex known)",
                 ["64 metadata rows where the official download has 10,015", "63 images where the official "
                  "download has 10,015", "63 lesions where the official download has 7,470"]),
    "mnist": ("mnist_root", "train 90 / val 10 / test 10 from 100 train, 10 test (val = 0.1 of train)",
              ["100 train where the official download has 60,000", "10 test where the official download has 10,000"]),
    "cifar10": ("cifar_root", "train 90 / val 10 / test 10 from 100 train, 10 test (val = 0.1 of train)",
                ["100 train where the official download has 50,000", "10 test where the official download has 10,000"]),
}
OFFICIAL_TEXT = {
    "utkface": 'the aligned & cropped set has 23,708 images, about 22,000 without race "Others"',
    "cinic10": "the official download has 90,000 / 90,000 / 90,000 train / valid / test images",
    "ham10000": "the official download has 10,015 images of 7,470 lesions",
    "mnist": "the official download has 60,000 / 10,000 train / test images",
    "cifar10": "the official download has 50,000 / 10,000 train / test images",
}


def _count_line(out: str, name: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith(f"{name}: train ")]
    assert len(lines) == 1, out
    return lines[0]


@pytest.mark.parametrize("name", sorted(COUNT_CASES))
def test_loader_prints_split_sizes_and_official_counts(name, request, capsys):
    fixture, says, _ = COUNT_CASES[name]
    root = request.getfixturevalue(fixture)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_dataset(name, root=root, seed=0)
    line = _count_line(capsys.readouterr().out, name)
    assert line.startswith(f"{name}: {says} in '{root.resolve()}")
    assert line.endswith(f"; {OFFICIAL_TEXT[name]}")


@pytest.mark.parametrize("name", sorted(COUNT_CASES))
def test_loader_warns_when_a_count_differs_from_the_official_download(name, request):
    fixture, _, differ = COUNT_CASES[name]
    root = request.getfixturevalue(fixture)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_dataset(name, root=root, seed=0)
    counts = [str(w.message) for w in caught if "official download" in str(w.message)]
    assert len(counts) == 1 and counts[0].startswith(f"{name}: found ")
    assert all(part in counts[0] for part in differ) and "partial download" in counts[0]
    assert "wrong folder" in counts[0]


def test_full_download_subsampled_does_not_warn(cinic_root, mnist_root, monkeypatch, capsys):
    """Counts are taken before ``max_per_split`` and the validation split: a full download never warns."""
    monkeypatch.setitem(real.OFFICIAL_COUNTS, "cinic10", {"train": 30, "valid": 30, "test": 30})
    monkeypatch.setitem(real.OFFICIAL_COUNTS, "mnist", {"train": 100, "test": 10})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        real.load_cinic10(cinic_root, size=8, max_per_split=7)
        real.load_mnist(mnist_root, val_frac=0.2)
    assert not [w for w in caught if "official download" in str(w.message)]
    out = capsys.readouterr().out
    assert _count_line(out, "cinic10").startswith("cinic10: train 7 / val 7 / test 7 from 30 train, 30 valid, 30 test "
                                                   "(at most 7 kept per split)")
    assert _count_line(out, "mnist").startswith("mnist: train 80 / val 20 / test 10 from 100 train, 10 test "
                                                "(val = 0.2 of train)")


def test_utkface_subset_folder_warns(utk_root):
    """crop_part1/ (a subset of the faces) where the full set was meant: the count warning says so."""
    _solid(utk_root / "crop_part1" / "40_0_1_20170101000000001.jpg.chip.jpg", (60, 80, 100))
    with pytest.warns(UserWarning, match=r"utkface: found 1 image files where the official download has 23,708 in "
                                         r"'.*crop_part1'"):
        real.load_utkface(utk_root, size=8, folder="crop_part1", fracs=(1.0, 0.0, 0.0))
