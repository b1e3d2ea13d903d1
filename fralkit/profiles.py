"""Notebook parameters for each run profile.

``PROFILES[notebook][profile]`` is the dict papermill injects into that notebook's ``parameters`` cell
(``profile`` itself is added by the runner). Profiles:

- ``smoke``: seconds per notebook on a 2-core CPU; what the tests run.
- ``quick``: minutes on a laptop CPU (the default of ``python -m fralkit reproduce``); built-in data.
- ``gpu``: one GPU, larger synthetic sets and the papers' architectures; produces the committed figures.
- ``paper``: the papers' protocols on the real data sets (set ``data_root``; hours on a GPU).
"""
from __future__ import annotations

PROFILE_NAMES = ("smoke", "quick", "gpu", "paper")

PROFILES: dict[str, dict[str, dict]] = {
    # 01: data sets, sample grids, counts, splits; calibration of the FRAL presets (standard vs TRADES).
    "01": {
        "smoke": {"calib_lr": 0.1, "calib_warmup_epochs": 0.0, "calib_grad_clip": 0.0,
                  "datasets": "synbols-utk,synbols-minority", "n": 400, "calibrate": True, "calib_n": 600,
                  "calib_backbone": "small_cnn", "calib_std_epochs": 1, "calib_trades_epochs": 1, "seeds": 1},
        "quick": {"calib_lr": 0.1, "calib_warmup_epochs": 0.0, "calib_grad_clip": 0.0,
                  "datasets": "synbols-utk,synbols-cinic,synbols-ham,synbols-minority,synbols-sensitive,synbols-farmur",
                  "n": 4000, "calibrate": True, "calib_n": 3000, "calib_backbone": "small_cnn",
                  "calib_std_epochs": 4, "calib_trades_epochs": 6, "seeds": 1},
        "gpu": {"calib_lr": 0.05, "calib_warmup_epochs": 2.0, "calib_grad_clip": 5.0,
                "datasets": "synbols-utk,synbols-cinic,synbols-ham,synbols-minority,synbols-sensitive,synbols-farmur",
                "n": 15000, "calibrate": True, "calib_n": 15000, "calib_backbone": "mobilenetv2",
                "calib_std_epochs": 12, "calib_trades_epochs": 30, "seeds": 1},
        "paper": {"calib_lr": 0.05, "calib_warmup_epochs": 2.0, "calib_grad_clip": 5.0,
                  "datasets": "utkface,cinic10,ham10000", "n": 0, "calibrate": False, "calib_n": 0,
                  "calib_backbone": "mobilenetv2", "calib_std_epochs": 12, "calib_trades_epochs": 30, "seeds": 1},
    },
    # 02: natural vs PGD-AT vs TRADES vs FairAT: group Worst/Disp/Avg, class-wise robust accuracy, curves.
    "02": {
        "smoke": {"warmup_epochs": 0.0, "grad_clip": 0.0, "datasets": "synbols-utk",
                  "methods": "natural,pgd_at,trades,fairat", "seeds": 1, "data_seed": 0,
                  "data_root": None, "n": 200, "backbone": "small_cnn", "epochs": 2, "batch_size": 64, "lr": 0.05,
                  "eps_255": 4, "alpha_255": 2, "steps": 2, "train_steps": 2, "beta": 6.0, "hard_frac": 0.2,
                  "hard_aug": "cutout", "hard_aug_strength": 0.5, "curve_n": 64, "device": "auto", "cuda_graph": False},
        # CPU: PGD-2 in training, PGD-5 in evaluation; one data set, one seed.
        "quick": {"warmup_epochs": 0.0, "grad_clip": 0.0, "datasets": "synbols-utk",
                  "methods": "natural,pgd_at,trades,fairat", "seeds": 1, "data_seed": 0,
                  "data_root": None, "n": 800, "backbone": "small_cnn", "epochs": 12, "batch_size": 32, "lr": 0.05,
                  "eps_255": 4, "alpha_255": 2, "steps": 5, "train_steps": 2, "beta": 6.0, "hard_frac": 0.2,
                  "hard_aug": "cutout", "hard_aug_strength": 0.5, "curve_n": 128, "device": "auto",
                  "cuda_graph": False},
        # One H100: 2 data sets x 4 methods x 3 seeds of MobileNetV2 on 3,000 images, PGD-5 throughout.
        "gpu": {"warmup_epochs": 2.0, "grad_clip": 5.0, "datasets": "synbols-utk,synbols-cinic",
                "methods": "natural,pgd_at,trades,fairat", "seeds": 3,
                "data_seed": 0, "data_root": None, "n": 3000, "backbone": "mobilenetv2", "epochs": 12,
                "batch_size": 256,
                "lr": 0.05, "eps_255": 4, "alpha_255": 2, "steps": 5, "train_steps": 0, "beta": 6.0, "hard_frac": 0.2,
                "hard_aug": "cutout", "hard_aug_strength": 0.5, "curve_n": 512, "device": "auto", "cuda_graph": True},
        # The JIN protocol on the real data sets under ../data/<name>/ (hours on a GPU).
        "paper": {"warmup_epochs": 2.0, "grad_clip": 5.0, "datasets": "utkface,cinic10,ham10000",
                  "methods": "natural,pgd_at,trades,fairat", "seeds": 3,
                  "data_seed": 0, "data_root": "../data", "n": 0, "backbone": "mobilenetv2", "epochs": 100,
                  "batch_size": 128, "lr": 0.1, "eps_255": 4, "alpha_255": 2, "steps": 5, "train_steps": 0,
                  "beta": 6.0, "hard_frac": 0.2, "hard_aug": "cutout", "hard_aug_strength": 0.5, "curve_n": 1000,
                  "device": "auto", "cuda_graph": False},
    },
    # 03: JIN vs its baselines (FRAL, paper 000): Tables 1-6, worst group per round, selection cost.
    "03": {
        "smoke": {"lr": 0.1, "warmup_epochs": 0.0, "grad_clip": 0.0, "dataset": "synbols-utk", "data_root": None,
                  "n": 300, "size": 16, "backbone": "small_cnn",
                  "strategies": "rand,g-rand,fairal,jin", "seeds": 1, "rounds": 1, "budget_frac": 0.02,
                  "init_frac": 0.2,
                  "epochs": 3, "finetune_epochs": 1, "batch_size": 32, "std_epochs": 2, "fairal_candidates": 8,
                  "fairal_labels": 2, "device": "auto", "run": True},
        "quick": {"lr": 0.1, "warmup_epochs": 0.0, "grad_clip": 0.0, "dataset": "synbols-utk", "data_root": None,
                  "n": 1000, "size": 16, "backbone": "small_cnn",
                  "strategies": "all", "seeds": 1, "rounds": 5, "budget_frac": 0.02, "init_frac": 0.2, "epochs": 20,
                  "finetune_epochs": 2, "batch_size": 32, "std_epochs": 6, "fairal_candidates": 16, "fairal_labels": 2,
                  "device": "auto", "run": True},
        # Measured on one H100 (2026-11-25): per seed, the initial model 1-2 min and every strategy about 8 s except
        # FairAL (about 2 min), plus 2-2.7 min on each process's first fine-tuning (likely cuDNN autotuning, now off
        # by default in the loop); synbols-ham's initial model about 2.3x longer (class-balanced oversampling).
        # `--jobs 9` runs one process per data set and seed and draws the tables once from the records (README).
        "gpu": {"lr": 0.05, "warmup_epochs": 2.0, "grad_clip": 5.0,
                "dataset": "synbols-utk,synbols-cinic,synbols-ham", "data_root": None, "n": 2000, "size": 0,
                "backbone": "mobilenetv2", "strategies": "all", "seeds": 3, "rounds": 5, "budget_frac": 0.02,
                "init_frac": 0.2, "epochs": 120, "finetune_epochs": 2, "batch_size": 128, "std_epochs": 10,
                "fairal_candidates": 16, "fairal_labels": 2, "device": "auto", "run": True},
        # JIN §4.1 on the real UTKFace, CINIC-10 and HAM10000 under ../data/<name>/ (hours on a GPU).
        "paper": {"lr": 0.05, "warmup_epochs": 2.0, "grad_clip": 5.0, "dataset": "utkface,cinic10,ham10000",
                  "data_root": "../data", "n": 0, "size": 0, "backbone": "mobilenetv2",
                  "strategies": "all", "seeds": 3, "rounds": 5, "budget_frac": 0.02, "init_frac": 0.2, "epochs": 100,
                  "finetune_epochs": 10, "batch_size": 128, "std_epochs": 30, "fairal_candidates": 256,
                  "fairal_labels": 0, "device": "auto", "run": True},
    },
    # 04: FARMUR Table 1 / Fig. 2: natural vs TRADES vs FARMUR per (data set, backbone) row, DeepFool distances.
    "04": {
        "smoke": {"warmup_epochs": 0.0, "grad_clip": 0.0, "rows": "lenet5-mnist,utkclassifier-utkface", "seeds": 1,
                  "data_root": None, "n": 300,
                  "n_test": 100, "size": 0, "natural_epochs": 1, "at_epochs": 2, "farmur_epochs": 1, "batch_size": 64,
                  "lr": 0.05, "schedule": "cosine", "eps": 0.031, "alpha": 0.007, "steps": 2, "beta": 6.0, "eval_n": 0,
                  "split_n": 200, "df_max_iter": 50, "df_candidates": 0, "df_clamp": False, "device": "auto"},
        # quick: AlexNet (no batch norm) needs hundreds of SGD steps to start learning, too slow on a CPU: small_cnn
        # stands in for it and for ResNet-18 (the tables name the backbone actually used).
        "quick": {"warmup_epochs": 1.0, "grad_clip": 5.0,
                  "rows": "lenet5-mnist,alexnet-mnist:small_cnn,resnet18-cifar10:small_cnn,utkclassifier-utkface",
                  "seeds": 1, "data_root": None, "n": 1500, "n_test": 300, "size": 0, "natural_epochs": 6,
                  "at_epochs": 6, "farmur_epochs": 2, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "eps": 0.031,
                  "alpha": 0.007, "steps": 2, "beta": 6.0, "eval_n": 0, "split_n": 600, "df_max_iter": 50,
                  "df_candidates": 0, "df_clamp": False, "device": "auto"},
        "gpu": {"warmup_epochs": 2.0, "grad_clip": 5.0,
                "rows": "lenet5-mnist,alexnet-mnist,resnet18-cifar10,utkclassifier-utkface", "seeds": 1,
                "data_root": None, "n": 8000, "n_test": 2000, "size": 0, "natural_epochs": 12, "at_epochs": 15,
                "farmur_epochs": 3, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "eps": 0.031, "alpha": 0.007,
                "steps": 5, "beta": 6.0, "eval_n": 0, "split_n": 4000, "df_max_iter": 50, "df_candidates": 0,
                "df_clamp": False, "device": "auto"},
        # The paper's protocol (§6.1) on the real MNIST, CIFAR-10 and UTKFace under ../data (hours on a GPU).
        "paper": {"warmup_epochs": 2.0, "grad_clip": 5.0,
                  "rows": "lenet5-mnist,alexnet-mnist,resnet18-cifar10,utkclassifier-utkface", "seeds": 1,
                  "data_root": "../data", "n": 0, "n_test": 0, "size": 0, "natural_epochs": 120, "at_epochs": 120,
                  "farmur_epochs": 20, "batch_size": 64, "lr": 0.1, "schedule": "constant", "eps": 0.031,
                  "alpha": 0.007, "steps": 10, "beta": 6.0, "eval_n": 0, "split_n": 0, "df_max_iter": 50,
                  "df_candidates": 0, "df_clamp": False, "device": "auto"},
    },
    # 05: BALD + GRAD on Synbols (paper 004): Table 1, Fig. 1 (uncertainty gap), Figs. 2-3 (curves), query grids.
    "05": {
        "smoke": {"datasets": "synbols-sensitive,synbols-minority", "methods": "all", "seeds": 1, "n": 400, "size": 32,
                  "data_seed": 0, "backbone": "small_cnn", "dropout": 0.5, "init": "scratch", "pretrain_n": 0,
                  "pretrain_epochs": 0, "init_labels": 20, "query_size": 10, "max_frac": 0.1, "mc_samples": 4,
                  "epochs": 2, "batch_size": 32, "lr": 0.05, "schedule": "cosine", "grad_hidden": 32,
                  "repair_epochs": 1, "cpu_threads": 1, "device": "auto"},
        "quick": {"datasets": "synbols-sensitive,synbols-minority", "methods": "all", "seeds": 2, "n": 1000, "size": 32,
                  "data_seed": 0, "backbone": "small_cnn", "dropout": 0.5, "init": "pretrained", "pretrain_n": 3000,
                  "pretrain_epochs": 4, "init_labels": 50, "query_size": 25, "max_frac": 0.1, "mc_samples": 10,
                  "epochs": 10, "batch_size": 32, "lr": 0.05, "schedule": "cosine", "grad_hidden": 256,
                  "repair_epochs": 4, "cpu_threads": 1, "device": "auto"},
        # One H100: vgg_mc at 64 px, the paper's 500 + 50 per step up to 10 % of 10,000 images, 3 seeds.
        "gpu": {"datasets": "synbols-sensitive,synbols-minority", "methods": "all", "seeds": 3, "n": 10000, "size": 64,
                "data_seed": 0, "backbone": "vgg_mc", "dropout": None, "init": "pretrained", "pretrain_n": 5000,
                "pretrain_epochs": 5, "init_labels": 500, "query_size": 50, "max_frac": 0.1, "mc_samples": 20,
                "epochs": 10, "batch_size": 64, "lr": 0.02, "schedule": "cosine", "grad_hidden": 1024,
                "repair_epochs": 5, "cpu_threads": 0, "device": "auto"},
        # The paper's sizes: 100k training images, 64 px, up to 10 % labelled (190 steps of 50), SGD 0.001 at a
        # constant rate, 20 epochs per step; many GPU hours.
        "paper": {"datasets": "synbols-sensitive,synbols-minority", "methods": "all", "seeds": 3, "n": 100000,
                  "size": 64, "data_seed": 0, "backbone": "vgg_mc", "dropout": None, "init": "pretrained",
                  "pretrain_n": 20000, "pretrain_epochs": 10, "init_labels": 500, "query_size": 50, "max_frac": 0.1,
                  "mc_samples": 20, "epochs": 20, "batch_size": 32, "lr": 0.001, "schedule": "constant",
                  "grad_hidden": 4096, "repair_epochs": 20, "cpu_threads": 0, "device": "auto"},
    },
}


def notebook_parameters(notebook: str, profile: str) -> dict:
    """The parameters of notebook ``"01"``..``"05"`` under ``profile`` (with ``profile`` itself)."""
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; valid: {list(PROFILE_NAMES)}")
    if notebook not in PROFILES:
        raise ValueError(f"unknown notebook {notebook!r}; valid: {sorted(PROFILES)}")
    return {**PROFILES[notebook][profile], "profile": profile}
