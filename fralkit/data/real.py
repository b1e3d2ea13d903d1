"""Loaders for the real data sets, each reading the layout its official download unpacks to.

| loader | paper | label | group | split |
|---|---|---|---|---|
| ``load_utkface`` (``task="jin"``) | JIN (Wu et al.), §4.1 | race: White, Black, Asian, Indian | age < 30 young, >= 30 old | seeded random 0.7 / 0.1 / 0.2 |
| ``load_utkface`` (``task="farmur"``) | FARMUR (Mousavi et al.), §5 | 5 age bins [0,15) [15,25) [25,40) [40,60) 60+ | race (4 partitions) | same |
| ``load_cinic10`` | JIN (Wu et al.), §4.1 | the 10 CIFAR-10 classes | origin: CIFAR-10 or ImageNet | the official train / valid / test folders |
| ``load_ham10000`` | JIN (Wu et al.), §4.1 | 7 diagnoses (nv, mel, bkl, bcc, akiec, vasc, df) | sex | seeded random 7:3 train:test, val from train |
| ``load_mnist``, ``load_cifar10`` | FARMUR (Mousavi et al.), §5 | the 10 classes | the class (FARMUR's partitions) | the official train / test, val from train |

Every loader returns ``DataSplits(train, val, test)`` of ``GroupDataset`` with uint8 images resized to
``size`` x ``size``. Photos are decoded one by one with Pillow (JPEG files at a reduced scale, see
``PIL.Image.draft``), resized with antialiased bilinear filtering and written into one preallocated uint8
array, a few threads at a time (option ``workers``). ``cache=True`` keeps the decoded array in
``$FRALKIT_CACHE/real`` keyed by the file list (names, sizes, modification times) and the image size, so
another seed or task reuses it. ``root`` may be the data set's folder or its parent (one level is searched),
so one folder holding ``UTKFace/``, ``CINIC-10/``, ``HAM10000/``, ``MNIST/`` and ``cifar-10-batches-py/``
serves every loader.

After loading, every loader prints one line: the split sizes, what it found on disk, and the counts of the
complete official download (``OFFICIAL_COUNTS``); where a found count differs from the official one (a partial
download, or root pointing at the wrong folder) it also warns, and the splits use what was found.

Choices the papers leave open, exposed as options: image size (64 px for UTKFace and HAM10000, the native
32 px for CINIC-10 and CIFAR-10, 28 px for MNIST), the UTKFace and HAM10000 validation sets (JIN evaluates
on its 30 % hold-out, named ``test`` here), and which image of a HAM10000 lesion is kept (the first by
``image_id``).
"""
from __future__ import annotations

import csv
import inspect
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..utils import atomic_write_bytes, cache_dir, config_hash, progress
from .core import DataSplits, GroupDataset, resize_uint8, split_indices, stratified_split

__all__ = [
    "load_utkface",
    "load_cinic10",
    "load_ham10000",
    "load_mnist",
    "load_cifar10",
    "parse_utkface_name",
    "UTKFACE_RACES",
    "UTKFACE_AGE_BINS",
    "CINIC10_CLASSES",
    "HAM10000_CLASSES",
    "HAM10000_COLUMNS",
    "OFFICIAL_COUNTS",
]

UTKFACE_RACES = ("White", "Black", "Asian", "Indian")  # race ids 0..3; id 4 ("Others") is dropped (JIN §4.1)
UTKFACE_AGE_BINS = (0, 15, 25, 40, 60)  # FARMUR's 5 age classes: [0,15) [15,25) [25,40) [40,60) 60+
CINIC10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
HAM10000_CLASSES = ("nv", "mel", "bkl", "bcc", "akiec", "vasc", "df")
HAM10000_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
_HAM_REQUIRED = ("lesion_id", "image_id", "dx", "sex")

_UTK_SUFFIXES = (".jpg.chip.jpg", ".chip.jpg", ".jpg")
_UTK_STEM = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d+)$")
_UTK_LAYOUT = ("files named [age]_[gender]_[race]_[date&time].jpg (or .jpg.chip.jpg), directly in root or in one "
               "subfolder such as UTKFace/ or crop_part1/")
_CINIC_CIFAR = re.compile(r"^cifar10-(train|test)-\d+\.png$", re.IGNORECASE)
_CINIC_IMAGENET = re.compile(r"^n\d{8}_\d+\.png$", re.IGNORECASE)
_CINIC_SPLITS = (("train", ("train",)), ("val", ("valid", "val")), ("test", ("test",)))
_CINIC_LAYOUT = "root/{train,valid,test}/<class>/*.png with the class folders " + ", ".join(CINIC10_CLASSES)
_HAM_METADATA = ("HAM10000_metadata.csv", "HAM10000_metadata.tab", "HAM10000_metadata")
_HAM_IMAGE_DIRS = ("ham10000_images_part_1", "ham10000_images_part_2", "images")
_HAM_LAYOUT = ("root/HAM10000_metadata.csv (columns " + ", ".join(HAM10000_COLUMNS) + ") and the images "
               "<image_id>.jpg in root/HAM10000_images_part_1/ and root/HAM10000_images_part_2/ (or root/images/, or root)")
# What a complete official download holds (README, Real data). UTKFace counts every .jpg of the aligned & cropped
# set, malformed names and race "Others" included (about 22,000 faces remain once "Others" is dropped); CINIC-10
# counts the recognised images of each split before ``max_per_split``; HAM10000 counts the metadata's rows, the
# images of those rows found on disk and the distinct lesions, before JIN's filters.
OFFICIAL_COUNTS: dict[str, dict[str, int]] = {
    "utkface": {"image files": 23_708},
    "cinic10": {"train": 90_000, "valid": 90_000, "test": 90_000},
    "ham10000": {"metadata rows": 10_015, "images": 10_015, "lesions": 7_470},
    "mnist": {"train": 60_000, "test": 10_000},
    "cifar10": {"train": 50_000, "test": 10_000},
}
_OFFICIAL_TEXT = {
    "utkface": 'the aligned & cropped set has 23,708 images, about 22,000 without race "Others"',
    "cinic10": "the official download has 90,000 / 90,000 / 90,000 train / valid / test images",
    "ham10000": "the official download has 10,015 images of 7,470 lesions",
    "mnist": "the official download has 60,000 / 10,000 train / test images",
    "cifar10": "the official download has 50,000 / 10,000 train / test images",
}
_MAX_EXAMPLES = 5  # file names quoted in meta for each kind of skipped file


# --------------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------------

def _check_options(loader: Callable, options: dict) -> None:
    """Unknown options raise ValueError listing the valid ones (the registry passes ``**options`` through)."""
    if options:
        valid = [p.name for p in inspect.signature(loader).parameters.values()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY]
        raise ValueError(f"{loader.__name__}: unknown option(s) {sorted(options)}; valid: {valid}")


def _check_size(size: int) -> int:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size!r}")
    return int(size)


def _check_frac(name: str, value: float) -> float:
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
    return float(value)


def _root_dir(root, dataset: str, layout: str) -> Path:
    if root is None:
        raise ValueError(f"{dataset}: pass root=<folder of the official download>; expected {layout}")
    path = Path(root).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"{dataset}: root {str(path)!r} does not exist; expected {layout}")
    if not path.is_dir():
        raise NotADirectoryError(f"{dataset}: root {str(path)!r} is not a folder; expected {layout}")
    return path


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_files(folder: Path) -> list[str]:
    """Plain file names in ``folder``, sorted, hidden files (``.DS_Store``, ``._*``) left out."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_file())


def _examples(names: Sequence[str]) -> list[str]:
    return [str(n) for n in names[:_MAX_EXAMPLES]]


def _workers(workers: int | None) -> int:
    if workers is None:
        return max(1, min(8, os.cpu_count() or 1))
    if workers < 1:
        raise ValueError(f"workers must be a positive number of threads, got {workers}")
    return int(workers)


def _decode(path: Path, size: int, mode: str) -> np.ndarray:
    """One image as uint8 ``[H, W]`` or ``[H, W, 3]``, resized to ``size`` x ``size`` (antialiased bilinear)."""
    from PIL import Image

    bilinear = getattr(Image, "Resampling", Image).BILINEAR
    with Image.open(path) as im:
        # JPEG only: decode at the smallest 1/2, 1/4 or 1/8 scale that is still >= size (much faster for photos).
        im.draft(mode, (size, size))
        im = im.convert(mode)
        if im.size != (size, size):
            im = im.resize((size, size), bilinear)
        return np.asarray(im, dtype=np.uint8)


def _read_images(paths: Sequence[Path], size: int, *, channels: int = 3, workers: int | None = None,
                 cache: bool = False, desc: str = "images") -> tuple[torch.Tensor, np.ndarray, bool]:
    """Decode ``paths`` into one preallocated uint8 ``[N, C, size, size]`` array.

    Returns ``(x, ok, cached)``: ``ok[i]`` is False where file ``i`` could not be decoded (its slot is zero);
    ``cached`` says the array came from the cache.
    """
    mode = {1: "L", 3: "RGB"}[channels]
    n = len(paths)
    path = None
    if cache:
        stats = [(str(p.resolve()), st.st_size, st.st_mtime_ns) for p in paths for st in (p.stat(),)]
        key = config_hash({"files": stats, "size": size, "channels": channels, "format": 1})
        path = cache_dir() / "real" / f"{desc}-{key}.npz"
        if path.exists():
            try:
                with np.load(path) as z:
                    return torch.from_numpy(z["x"]), z["ok"], True
            except (OSError, KeyError, ValueError):
                path.unlink(missing_ok=True)  # a damaged cache file is decoded again
    x = np.zeros((n, channels, size, size), dtype=np.uint8)
    ok = np.ones(n, dtype=bool)

    def read(i: int) -> None:
        try:
            img = _decode(paths[i], size, mode)
        except (OSError, ValueError, SyntaxError):  # PIL's errors for truncated or non-image files
            ok[i] = False
            return
        x[i] = img[None] if channels == 1 else img.transpose(2, 0, 1)

    block = 512
    bar = progress(total=n, desc=f"reading {desc}")
    try:
        with ThreadPoolExecutor(max_workers=_workers(workers)) as pool:
            for start in range(0, n, block):
                list(pool.map(read, range(start, min(n, start + block))))
                bar.update(min(n, start + block) - start)
    finally:
        bar.close()
    if path is not None:
        import io

        buf = io.BytesIO()
        np.savez(buf, x=x, ok=ok)
        atomic_write_bytes(path, buf.getvalue())
    return torch.from_numpy(x), ok, False


def _warn_unreadable(dataset: str, paths: Sequence[Path], ok: np.ndarray) -> list[str]:
    bad = [str(p) for p, good in zip(paths, ok) if not good]
    if bad:
        warnings.warn(f"{dataset}: {len(bad)} image file(s) could not be decoded and were skipped, e.g. {bad[:3]}",
                      stacklevel=3)
    return bad


def _report_counts(dataset: str, splits: DataSplits, found: dict[str, int], source, note: str = "") -> DataSplits:
    """Print one line with the split sizes, the counts found and the official download's; warn where they differ.

    Args:
        found: the counts of ``OFFICIAL_COUNTS[dataset]``, as found under ``source``.
        note: what the loader kept of them, in words (e.g. ``"40 of race 0-3"``).
    """
    sizes = splits.sizes()
    seen = ", ".join(f"{n:,} {what}" for what, n in found.items())
    print(f"{dataset}: train {sizes['train']:,} / val {sizes['val']:,} / test {sizes['test']:,} from {seen}"
          f"{f' ({note})' if note else ''} in {str(source)!r}; {_OFFICIAL_TEXT[dataset]}")
    official = OFFICIAL_COUNTS[dataset]
    differ = [f"{found[what]:,} {what} where the official download has {n:,}"
              for what, n in official.items() if found[what] != n]
    if differ:
        warnings.warn(f"{dataset}: found {'; '.join(differ)} in {str(source)!r}: a partial download, or root points at "
                      f"the wrong folder? The splits use what was found.", stacklevel=3)
    return splits


def _splits(x: torch.Tensor, y, g, parts: Sequence[torch.Tensor], classes, groups, name: str, meta: dict) -> DataSplits:
    y = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    g = torch.as_tensor(np.asarray(g), dtype=torch.int64)
    out = []
    for split, idx in zip(("train", "val", "test"), parts):
        out.append(GroupDataset(x[idx], y[idx], g[idx], list(classes), list(groups), name, {**meta, "split": split}))
    return DataSplits(*out)


# --------------------------------------------------------------------------------------------------------
# UTKFace
# --------------------------------------------------------------------------------------------------------

def parse_utkface_name(filename: str) -> tuple[int, int, int] | None:
    """``(age, gender, race)`` from a UTKFace file name, or None when the name is malformed.

    Names follow ``[age]_[gender]_[race]_[date&time].jpg``; the aligned-and-cropped faces end in
    ``.jpg.chip.jpg``. Gender is 0 (male) or 1 (female); race 0..4 (White, Black, Asian, Indian, Others).
    """
    lower = filename.lower()
    for suffix in _UTK_SUFFIXES:
        if lower.endswith(suffix):
            m = _UTK_STEM.match(filename[:-len(suffix)])
            return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None
    return None


def _utk_folder(root: Path, folder: str | None) -> tuple[Path, list[str]]:
    """The folder holding the UTKFace images: ``root/folder``, root itself, or one subfolder of it."""
    def jpgs(path: Path) -> list[str]:
        return [n for n in _list_files(path) if n.lower().endswith(".jpg")]

    if folder is not None:
        path = root / folder
        if not path.is_dir():
            raise FileNotFoundError(f"utkface: folder {str(path)!r} does not exist; expected {_UTK_LAYOUT}")
        return path, jpgs(path)
    names = jpgs(root)
    if any(parse_utkface_name(n) for n in names):
        return root, names
    found = []
    for sub in _subdirs(root):
        sub_names = jpgs(sub)
        n_valid = sum(parse_utkface_name(n) is not None for n in sub_names)
        if n_valid:
            found.append((sub, sub_names, n_valid))
    if not found:
        raise FileNotFoundError(f"utkface: no UTKFace images in {str(root)!r} or its subfolders; expected {_UTK_LAYOUT}")
    # The aligned-and-cropped full set (UTKFace/) is what the papers use; then its subset crop_part1/.
    rank = {"utkface": 0, "crop_part1": 1}
    found.sort(key=lambda t: (rank.get(t[0].name.lower(), 2), -t[2], t[0].name))
    if len(found) > 1:
        warnings.warn(f"utkface: several image folders in {str(root)!r} ({[t[0].name for t in found]}); "
                      f"using {found[0][0].name!r} (pass folder=... to choose)", stacklevel=3)
    return found[0][0], found[0][1]


def load_utkface(root=None, seed: int = 0, *, task: str = "jin", size: int = 64,
                 fracs: Sequence[float] = (0.7, 0.1, 0.2), age_threshold: int = 30, folder: str | None = None,
                 stratify: bool = False, workers: int | None = None, cache: bool = False, **options) -> DataSplits:
    """UTKFace (Zhang et al. 2017) for JIN (Wu et al., §4.1) or FARMUR (Mousavi et al., §5).

    Reads ``[age]_[gender]_[race]_[date&time].jpg`` files (also ``.jpg.chip.jpg`` / ``.chip.jpg``) from
    ``root`` or one subfolder (``UTKFace/`` preferred, then ``crop_part1/``). Race 4 ("Others") is dropped,
    as in JIN. Malformed file names are skipped, counted in ``meta["skipped"]`` and warned about.

    Args:
        root: folder of the download (or its parent).
        seed: fixes the random train / val / test split.
        task: ``"jin"``: label = race (White, Black, Asian, Indian), group = age < ``age_threshold``
            ("young") or not ("old"). ``"farmur"``: label = age bin [0,15) [15,25) [25,40) [40,60) 60+,
            group = race (4 partitions).
        size: image side in pixels (the aligned crops are 200 px; Nanda et al.'s classifier used 200).
        fracs: train / val / test fractions. JIN splits 7:3 and reports on the 30 %; the default keeps
            0.2 for test and a 0.1 validation set for worst-group estimation.
        age_threshold: JIN's young / old boundary (30 years).
        folder: the image subfolder to use when ``root`` holds several.
        stratify: split within each (label, group) cell instead of at random.
        workers: decoding threads (default: up to 8).
        cache: keep the decoded images in ``$FRALKIT_CACHE/real``.
    """
    _check_options(load_utkface, options)
    tasks = ("jin", "farmur")
    if task not in tasks:
        raise ValueError(f"utkface: unknown task {task!r}; valid: {list(tasks)}")
    size = _check_size(size)
    path, names = _utk_folder(_root_dir(root, "utkface", _UTK_LAYOUT), folder)
    kept, ages, races, skipped, others = [], [], [], [], 0
    for name in names:
        parsed = parse_utkface_name(name)
        if parsed is None:
            skipped.append(name)
        elif parsed[2] == 4:
            others += 1
        else:
            kept.append(name)
            ages.append(parsed[0])
            races.append(parsed[2])
    if skipped:
        warnings.warn(f"utkface: skipped {len(skipped)} file(s) with malformed names in {str(path)!r}, "
                      f"e.g. {_examples(skipped)}", stacklevel=2)
    if not kept:
        raise FileNotFoundError(f"utkface: no usable images (race 0..3) in {str(path)!r}; expected {_UTK_LAYOUT}")
    paths = [path / n for n in kept]
    x, ok, cached = _read_images(paths, size, workers=workers, cache=cache, desc="utkface")
    unreadable = _warn_unreadable("utkface", paths, ok)
    ages_a, races_a = np.asarray(ages)[ok], np.asarray(races)[ok]
    x = x[torch.from_numpy(ok)] if unreadable else x
    if task == "jin":
        y, g = races_a, (ages_a >= int(age_threshold)).astype(np.int64)
        classes, groups = list(UTKFACE_RACES), ["young", "old"]
        about = f"UTKFace, JIN: 4 races, groups young (< {age_threshold}) / old"
    else:
        y, g = np.digitize(ages_a, UTKFACE_AGE_BINS[1:]), races_a
        classes, groups = ["0-15", "15-25", "25-40", "40-60", "60+"], list(UTKFACE_RACES)
        about = "UTKFace, FARMUR: 5 age bins, partitions = 4 races"
    fracs = tuple(float(f) for f in fracs)
    if len(fracs) != 3:
        raise ValueError(f"utkface: fracs must be 3 train / val / test fractions, got {list(fracs)}")
    if stratify:
        parts = stratified_split(torch.as_tensor(y * len(groups) + g), fracs, seed)
    else:
        parts = split_indices(len(y), fracs, seed)
    meta = {"source": str(path), "task": task, "size": size, "seed": int(seed), "fracs": list(fracs),
            "stratify": bool(stratify), "skipped": len(skipped), "skipped_examples": _examples(skipped),
            "dropped_others": others, "unreadable": len(unreadable), "cached": cached, "about": about}
    splits = _splits(x, y, g, parts, classes, groups, "utkface", meta)
    return _report_counts("utkface", splits, {"image files": len(names)}, path, f"{len(kept):,} of race 0-3")


# --------------------------------------------------------------------------------------------------------
# CINIC-10
# --------------------------------------------------------------------------------------------------------

def _cinic_root(root: Path) -> Path:
    def missing_splits(p: Path) -> list[str]:
        return [dirs[0] + "/" for _, dirs in _CINIC_SPLITS if not any((p / d).is_dir() for d in dirs)]

    candidates = [root, *_subdirs(root)]
    for p in candidates:
        if not missing_splits(p):
            return p
    # A folder holding some of the splits is the download with one folder lost: say which.
    partial = [p for p in candidates if len(missing_splits(p)) < len(_CINIC_SPLITS)]
    if partial:
        base = partial[0]
        raise FileNotFoundError(f"cinic10: folder(s) {', '.join(missing_splits(base))} missing in {str(base)!r}; "
                                f"expected {_CINIC_LAYOUT}")
    raise FileNotFoundError(f"cinic10: no train/, valid/ and test/ folders in {str(root)!r} or its subfolders; "
                            f"expected {_CINIC_LAYOUT}")


def load_cinic10(root=None, seed: int = 0, *, size: int = 32, max_per_split: int | None = None,
                 workers: int | None = None, cache: bool = False, **options) -> DataSplits:
    """CINIC-10 (Darlow et al. 2018) with groups by origin, as in JIN (Wu et al., §4.1).

    Reads ``root/train|valid|test/<class>/*.png`` (the official split, ``valid`` = val). The group is the
    image's origin, read from its name: ``cifar10-<split>-<n>.png`` are CIFAR-10 images, ``n<synset>_<n>.png``
    ImageNet ones. Other file names are skipped, counted in ``meta["skipped"]`` and warned about.

    Args:
        root: folder of the download (or its parent).
        seed: fixes the subsample drawn by ``max_per_split``.
        size: image side in pixels (native 32).
        max_per_split: keep at most this many images of each split, a seeded random subset.
        workers: decoding threads (default: up to 8).
        cache: keep the decoded images in ``$FRALKIT_CACHE/real``.
    """
    _check_options(load_cinic10, options)
    size = _check_size(size)
    if max_per_split is not None and max_per_split < 1:
        raise ValueError(f"cinic10: max_per_split must be a positive number of images or None, got {max_per_split}")
    base = _cinic_root(_root_dir(root, "cinic10", _CINIC_LAYOUT))
    parts_out, skipped_all, unreadable_all, cached_all, found = [], [], 0, True, {}
    for s, (split, dirs) in enumerate(_CINIC_SPLITS):
        split_dir = next(base / d for d in dirs if (base / d).is_dir())
        missing = [c for c in CINIC10_CLASSES if not (split_dir / c).is_dir()]
        if missing:
            raise FileNotFoundError(f"cinic10: class folder(s) {missing} missing in {str(split_dir)!r}; expected {_CINIC_LAYOUT}")
        paths, y, g = [], [], []
        for c, cls in enumerate(CINIC10_CLASSES):
            for name in _list_files(split_dir / cls):
                if _CINIC_CIFAR.match(name):
                    origin = 0
                elif _CINIC_IMAGENET.match(name):
                    origin = 1
                else:
                    skipped_all.append(f"{split_dir.name}/{cls}/{name}")
                    continue
                paths.append(split_dir / cls / name)
                y.append(c)
                g.append(origin)
        if not paths:
            raise FileNotFoundError(f"cinic10: no images in {str(split_dir)!r}; expected {_CINIC_LAYOUT}")
        found[dirs[0]] = len(paths)
        if max_per_split is not None and len(paths) > max_per_split:
            gen = torch.Generator().manual_seed(int(seed) * 3 + s)
            keep = torch.randperm(len(paths), generator=gen)[:max_per_split].sort().values.tolist()
            paths, y, g = [paths[i] for i in keep], [y[i] for i in keep], [g[i] for i in keep]
        x, ok, cached = _read_images(paths, size, workers=workers, cache=cache, desc=f"cinic10-{split}")
        cached_all &= cached
        unreadable_all += len(_warn_unreadable("cinic10", paths, ok))
        keep_t = torch.from_numpy(ok)
        parts_out.append((split, x[keep_t], torch.as_tensor(y)[keep_t], torch.as_tensor(g)[keep_t]))
    if skipped_all:
        warnings.warn(f"cinic10: skipped {len(skipped_all)} file(s) whose names are neither cifar10-<split>-<n>.png "
                      f"nor n<synset>_<n>.png, e.g. {_examples(skipped_all)}", stacklevel=2)
    meta = {"source": str(base), "size": size, "seed": int(seed), "max_per_split": max_per_split,
            "skipped": len(skipped_all), "skipped_examples": _examples(skipped_all), "unreadable": unreadable_all,
            "cached": bool(cached_all), "about": "CINIC-10, JIN: 10 classes, groups = origin (CIFAR-10 / ImageNet)"}
    splits = DataSplits(*(GroupDataset(x, y, g, list(CINIC10_CLASSES), ["cifar10", "imagenet"], "cinic10",
                                       {**meta, "split": split}) for split, x, y, g in parts_out))
    note = f"at most {max_per_split:,} kept per split" if max_per_split is not None else ""
    return _report_counts("cinic10", splits, found, base, note)


# --------------------------------------------------------------------------------------------------------
# HAM10000
# --------------------------------------------------------------------------------------------------------

def _ham_metadata(root: Path, metadata: str | None) -> Path:
    if metadata is not None:
        path = Path(metadata).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise FileNotFoundError(f"ham10000: metadata file {str(path)!r} not found; expected {_HAM_LAYOUT}")
        return path
    for folder in [root] + _subdirs(root):
        for name in _HAM_METADATA:
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(f"ham10000: HAM10000_metadata.csv not found in {str(root)!r} or its subfolders; "
                            f"expected {_HAM_LAYOUT}")


def _ham_image_index(base: Path) -> dict[str, Path]:
    """``image_id -> path`` for the ``.jpg`` files in the part folders, ``images/`` and ``base`` itself."""
    folders = [base] + [p for p in _subdirs(base) if p.name.lower() in _HAM_IMAGE_DIRS]
    index: dict[str, Path] = {}
    for folder in folders:
        for name in _list_files(folder):
            stem, ext = os.path.splitext(name)
            if ext.lower() in (".jpg", ".jpeg"):
                index.setdefault(stem, folder / name)
    return index


def _read_ham_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        head = fh.readline()
        fh.seek(0)
        delimiter = "\t" if "\t" in head else ","  # Dataverse's tabular export (.tab) is tab-separated
        reader = csv.DictReader(fh, delimiter=delimiter)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in _HAM_REQUIRED if c not in columns]
        if missing:
            raise ValueError(f"ham10000: {str(path)!r} lacks column(s) {missing}; found {columns}; "
                             f"expected the columns {list(HAM10000_COLUMNS)}")
        return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]


def load_ham10000(root=None, seed: int = 0, *, size: int = 64, test_frac: float = 0.3, val_frac: float = 0.1,
                  metadata: str | None = None, stratify: bool = False, workers: int | None = None,
                  cache: bool = False, **options) -> DataSplits:
    """HAM10000 (Tschandl et al. 2018) with groups by sex, as in JIN (Wu et al., §4.1).

    Reads ``HAM10000_metadata.csv`` and the images ``<image_id>.jpg`` in ``HAM10000_images_part_1/`` and
    ``HAM10000_images_part_2/`` (or ``images/``, or root). As in JIN: rows whose sex is not male or female
    are dropped (``meta["dropped_sex"]``), and repeated images of a lesion are filtered out, keeping one image
    per ``lesion_id``, the first by ``image_id`` (``meta["duplicates"]``). A kept image listed in the csv but
    absent on disk is skipped and counted (``meta["missing"]``). Then a seeded random 7:3 train:test split,
    and ``val_frac`` of train becomes the validation set (the test set does not depend on ``val_frac``).

    Args:
        root: folder of the download (or its parent).
        seed: fixes the splits.
        size: image side in pixels (the photos are 600 x 450, resized without cropping).
        test_frac: JIN's 30 % hold-out.
        val_frac: share of the training part moved to validation.
        metadata: path of the metadata file, if not ``root/HAM10000_metadata.csv``.
        stratify: split within each (diagnosis, sex) cell instead of at random.
        workers: decoding threads (default: up to 8).
        cache: keep the decoded images in ``$FRALKIT_CACHE/real``.
    """
    _check_options(load_ham10000, options)
    size = _check_size(size)
    test_frac, val_frac = _check_frac("test_frac", test_frac), _check_frac("val_frac", val_frac)
    root_path = _root_dir(root, "ham10000", _HAM_LAYOUT)
    csv_path = _ham_metadata(root_path, metadata)
    image_base = root_path if metadata is not None else csv_path.parent
    rows = _read_ham_rows(csv_path)
    sexes = ("male", "female")
    kept = [r for r in rows if r["sex"].lower() in sexes]
    dropped_sex = len(rows) - len(kept)
    bad_dx = sorted({r["dx"] for r in kept if r["dx"] not in HAM10000_CLASSES})
    if bad_dx:
        raise ValueError(f"ham10000: unknown dx value(s) {bad_dx} in {str(csv_path)!r}; expected {list(HAM10000_CLASSES)}")
    kept.sort(key=lambda r: (r["lesion_id"], r["image_id"]))
    first: dict[str, dict[str, str]] = {}
    for r in kept:
        first.setdefault(r["lesion_id"], r)
    chosen = sorted(first.values(), key=lambda r: r["image_id"])
    duplicates = len(kept) - len(chosen)
    index = _ham_image_index(image_base)
    missing = [r["image_id"] for r in chosen if r["image_id"] not in index]
    if missing:
        warnings.warn(f"ham10000: {len(missing)} image(s) listed in {csv_path.name} not found in {str(image_base)!r}, skipped, "
                      f"e.g. {_examples(missing)}", stacklevel=2)
    chosen = [r for r in chosen if r["image_id"] in index]
    if not chosen:
        raise FileNotFoundError(f"ham10000: none of the images listed in {str(csv_path)!r} were found in "
                                f"{str(image_base)!r}; expected {_HAM_LAYOUT}")
    paths = [index[r["image_id"]] for r in chosen]
    x, ok, cached = _read_images(paths, size, workers=workers, cache=cache, desc="ham10000")
    unreadable = _warn_unreadable("ham10000", paths, ok)
    if unreadable:
        x = x[torch.from_numpy(ok)]
        chosen = [r for r, good in zip(chosen, ok) if good]
    y = np.array([HAM10000_CLASSES.index(r["dx"]) for r in chosen], dtype=np.int64)
    g = np.array([sexes.index(r["sex"].lower()) for r in chosen], dtype=np.int64)
    if stratify:
        strata = torch.as_tensor(y * 2 + g)
        trainval, test = stratified_split(strata, (1 - test_frac, test_frac), seed)
        tr, va = stratified_split(strata[trainval], (1 - val_frac, val_frac), seed)
    else:
        trainval, test = split_indices(len(y), (1 - test_frac, test_frac), seed)
        tr, va = split_indices(len(trainval), (1 - val_frac, val_frac), seed)
    parts = (trainval[tr], trainval[va], test)
    meta = {"source": str(image_base), "metadata": str(csv_path), "size": size, "seed": int(seed),
            "test_frac": test_frac, "val_frac": val_frac, "stratify": bool(stratify), "rows": len(rows),
            "dropped_sex": dropped_sex, "duplicates": duplicates, "missing": len(missing),
            "missing_examples": _examples(missing), "unreadable": len(unreadable), "cached": cached,
            "about": "HAM10000, JIN: 7 diagnoses, groups = sex; one image per lesion"}
    splits = _splits(x, y, g, parts, HAM10000_CLASSES, sexes, "ham10000", meta)
    found = {"metadata rows": len(rows), "images": sum(r["image_id"] in index for r in rows),
             "lesions": len({r["lesion_id"] for r in rows})}
    return _report_counts("ham10000", splits, found, image_base, "one image per lesion, sex known")


# --------------------------------------------------------------------------------------------------------
# MNIST and CIFAR-10 (through torchvision)
# --------------------------------------------------------------------------------------------------------

def _torchvision_split(cls, root: Path, train: bool, download: bool, dataset: str, layout: str):
    try:
        return cls(str(root), train=train, download=download)
    except RuntimeError as err:
        if download:  # a failed download keeps torchvision's own message
            raise
        raise FileNotFoundError(f"{dataset}: files not found or corrupted under {str(root)!r}: expected {layout}; "
                                f"download=True fetches them ({err})") from err


def _class_partitioned(name: str, x_train: torch.Tensor, y_train, x_test: torch.Tensor, y_test, classes: list[str],
                       *, seed: int, val_frac: float, size: int, meta: dict) -> DataSplits:
    """Val carved from train (stratified by class, seeded); group = class: FARMUR's partitions (Mousavi et al., §5)."""
    if x_train.shape[-1] != size or x_train.shape[-2] != size:
        x_train, x_test = resize_uint8(x_train, size), resize_uint8(x_test, size)
    y_train = torch.as_tensor(y_train, dtype=torch.int64)
    y_test = torch.as_tensor(y_test, dtype=torch.int64)
    tr, va = stratified_split(y_train, (1 - val_frac, val_frac), seed)
    meta = {**meta, "size": size, "seed": int(seed), "val_frac": val_frac}

    def make(x: torch.Tensor, y: torch.Tensor, split: str) -> GroupDataset:
        return GroupDataset(x, y, y.clone(), list(classes), list(classes), name, {**meta, "split": split})

    return DataSplits(make(x_train[tr], y_train[tr], "train"), make(x_train[va], y_train[va], "val"),
                      make(x_test, y_test, "test"))


def load_mnist(root=None, seed: int = 0, *, size: int = 28, channels: int = 1, val_frac: float = 0.1,
               download: bool = False, **options) -> DataSplits:
    """MNIST through ``torchvision.datasets.MNIST``, partitioned by class as in FARMUR (Mousavi et al., §5).

    Expects ``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (``download=True`` fetches them).

    Args:
        root: folder holding ``MNIST/``.
        seed: fixes the validation split.
        size: image side in pixels (native 28).
        channels: 1 (grey, native) or 3 (grey repeated).
        val_frac: share of the 60,000 training images moved to validation, stratified by class.
        download: let torchvision download the files when missing.
    """
    from torchvision.datasets import MNIST

    _check_options(load_mnist, options)
    size, val_frac = _check_size(size), _check_frac("val_frac", val_frac)
    if channels not in (1, 3):
        raise ValueError(f"mnist: channels must be 1 or 3, got {channels}")
    layout = "root/MNIST/raw/ with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
    base = Path(root).expanduser().resolve() if root is not None else None
    if base is None or (not download and not base.is_dir()):
        _root_dir(root, "mnist", layout + "; download=True fetches them")
    parts = [_torchvision_split(MNIST, base, train, download, "mnist", layout) for train in (True, False)]
    xs = [p.data.to(torch.uint8)[:, None].repeat(1, channels, 1, 1) for p in parts]
    classes = [str(d) for d in range(10)]
    meta = {"source": str(base / "MNIST"), "channels": channels, "about": "MNIST, FARMUR: 10 digits, partitions = classes"}
    splits = _class_partitioned("mnist", xs[0], parts[0].targets, xs[1], parts[1].targets, classes,
                                seed=seed, val_frac=val_frac, size=size, meta=meta)
    return _report_counts("mnist", splits, {"train": len(xs[0]), "test": len(xs[1])}, base / "MNIST",
                          f"val = {val_frac:g} of train")


def load_cifar10(root=None, seed: int = 0, *, size: int = 32, val_frac: float = 0.1, download: bool = False,
                 **options) -> DataSplits:
    """CIFAR-10 through ``torchvision.datasets.CIFAR10``, partitioned by class as in FARMUR (Mousavi et al., §5).

    Expects ``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` (``download=True``
    fetches them; torchvision checks their MD5 sums).

    Args:
        root: folder holding ``cifar-10-batches-py/``.
        seed: fixes the validation split.
        size: image side in pixels (native 32).
        val_frac: share of the 50,000 training images moved to validation, stratified by class.
        download: let torchvision download the files when missing.
    """
    from torchvision.datasets import CIFAR10

    _check_options(load_cifar10, options)
    size, val_frac = _check_size(size), _check_frac("val_frac", val_frac)
    layout = "root/cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta (the python version)"
    base = Path(root).expanduser().resolve() if root is not None else None
    if base is None or (not download and not base.is_dir()):
        _root_dir(root, "cifar10", layout + "; download=True fetches them")
    parts = [_torchvision_split(CIFAR10, base, train, download, "cifar10", layout) for train in (True, False)]
    xs = [torch.from_numpy(np.ascontiguousarray(p.data.transpose(0, 3, 1, 2))) for p in parts]
    meta = {"source": str(base / "cifar-10-batches-py"), "about": "CIFAR-10, FARMUR: 10 classes, partitions = classes"}
    splits = _class_partitioned("cifar10", xs[0], parts[0].targets, xs[1], parts[1].targets, list(parts[0].classes),
                                seed=seed, val_frac=val_frac, size=size, meta=meta)
    return _report_counts("cifar10", splits, {"train": len(xs[0]), "test": len(xs[1])}, base / "cifar-10-batches-py",
                          f"val = {val_frac:g} of train")
