"""Batched multi-class L2 DeepFool (Moosavi-Dezfooli et al. 2016) and the FARMUR distance d_theta (Eq. 8).

DeepFool walks from ``x0`` towards the nearest linearised decision boundary until the predicted label
changes. At an iterate ``x_i`` with original label ``k0`` and candidate classes ``c`` (the top-k classes
at ``x0``; all classes by default), for every candidate ``c != k0``::

    f'_c = f_c(x_i) - f_k0(x_i),   w'_c = grad f_c(x_i) - grad f_k0(x_i),   pert_c = |f'_c| / ||w'_c||_2

(the distance to a linear boundary divides by the plain L2 norm; Eq. 7 of the FARMUR paper prints it
squared, a slip). The step goes to the nearest one, ``c* = argmin pert_c``::

    r_i = (pert_c* + 1e-4) w'_c* / ||w'_c*||,   r_tot += r_i,   x_{i+1} = x0 + (1 + overshoot) r_tot

with overshoot 0.02 and at most 50 iterations, as in the reference implementation.

Here every sample of a batch moves at once on ``x.device``: one forward pass per iteration for the still
active samples, then the k - 1 input gradients ``w'_c`` of all of them, each from one backward pass of the
batch sum ``sum_n f'_c(x_n)`` (the samples of an eval-mode model are independent, so the gradient of the
sum holds every sample's own gradient). Samples whose label has changed are frozen and leave the batch.
Everything runs in fp32 with TF32 and autocast off by default: the distance is a small difference of logits.
``precision="3xtf32"`` computes the dense convolutions as TF32 products of split operands on tensor cores
(``fralkit.attacks.split_tf32``): on one H200 13-26 % faster and about 20 times fp32's rounding noise in the
distances (``benchmarks/deepfool_speed.py``).

**The distance (FARMUR Eq. 8).** ``d_theta(x) = (||r_max|| + ||r_tot||) / 2``, the mean of the
perturbation norms just before and just after the label changes. Two readings of "just before":

- ``before="boundary"`` (default): ``r_max`` is the accumulated step ``r_tot`` itself, DeepFool's estimate of
  the nearest boundary point (what the last step aimed at, before the overshoot pushed it across), and
  ``r_tot`` is the perturbation ``(1 + overshoot) r_tot`` that changed the label. For a linear classifier
  DeepFool converges in one step and ``d_theta = (1 + overshoot / 2) (|f'| / ||w'|| + 1e-4)``: the closed
  form within the overshoot.
- ``before="iterate"``: ``r_max`` is the previous iterate ``x_{i-1} - x0`` (the last one that kept the
  label). When the label changes after the first step this is ``x0`` itself, so ``d_theta`` is half the
  adversarial norm: kept for comparison, not as the default.

**Clamping.** ``clamp=False`` (default) follows the reference implementation and FARMUR: the iterates are
not clipped to the image box. Nanda et al. measure ``||x_adv - x0||_2`` with inputs in [0, 1] pixel space,
which is also what ``fralkit`` models take; ``clamp=True`` keeps every iterate in [0, 1] (the distance to
the boundary inside the image box; steps still come from the unclipped linearisation, so clipped runs can
need more iterations or never change the label). Norms are always measured on the iterates actually fed
to the model.

**Never-flipped samples** (no label change within ``max_iter``, or a zero gradient) are flagged with
``flipped=False``; their ``d_theta`` is computed from the last iterate by the same formula and is not a
distance to the boundary. Callers decide what to do with them; ``fralkit.studies.farmur`` counts and reports them.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, fields

import torch
import torch.nn as nn

from ..models import FoldedTwin, frozen_copy
from .split_tf32 import split_convolutions
from ..utils import progress as progress_bar

__all__ = ["DeepFoolResult", "deepfool", "DEEPFOOL_BEFORE", "DEEPFOOL_GRAD_MODES", "DEEPFOOL_PRECISIONS"]

DEEPFOOL_BEFORE = ("boundary", "iterate")
DEEPFOOL_GRAD_MODES = ("loop", "batched")
DEEPFOOL_PRECISIONS = ("fp32", "3xtf32", "tf32", "bf16")


@dataclass
class DeepFoolResult:
    """Per-sample DeepFool outcome (all tensors ``[N]`` on the input's device, ``x_adv`` ``[N, C, H, W]``).

    Attributes:
        d_theta: the FARMUR distance, Eq. 8: ``(r_before + r_after) / 2``.
        r_before: ``||r_max||_2``, the perturbation norm just before the label changes (see ``before``).
        r_after: ``||r_tot||_2``, the norm of the perturbation that changed the label (the last iterate).
        iters: DeepFool steps taken (``max_iter`` for samples that never flipped).
        flipped: whether the predicted label changed within ``max_iter`` steps.
        label: the model's prediction at ``x0`` (the label DeepFool moves away from).
        adv_label: the prediction at the last iterate.
        x_adv: the last iterate (only with ``return_adv=True``).
    """

    d_theta: torch.Tensor
    r_before: torch.Tensor
    r_after: torch.Tensor
    iters: torch.Tensor
    flipped: torch.Tensor
    label: torch.Tensor
    adv_label: torch.Tensor
    x_adv: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.d_theta.shape[0])

    def cpu(self) -> "DeepFoolResult":
        return DeepFoolResult(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).cpu())
                                 for f in fields(self)})

    def summary(self) -> dict:
        """Counts and means for logs and result records (plain Python numbers)."""
        n = len(self)
        ok = self.flipped
        return {"n": n, "n_flipped": int(ok.sum()), "n_unflipped": int(n - ok.sum()),
                "mean_iters": float(self.iters.float().mean()) if n else float("nan"),
                "max_iters": int(self.iters.max()) if n else 0,
                "mean_d_theta": float(self.d_theta[ok].mean()) if bool(ok.any()) else float("nan")}


@contextlib.contextmanager
def _arithmetic(device: torch.device, precision: str = "fp32", autotune: bool = False):
    """The arithmetic of ``precision``, with no cuDNN autotuning, which would re-tune for every new size of the
    shrinking active batch (all restored after). ``"fp32"``: no autocast, no TF32 in cuDNN convolutions or cuBLAS
    matmuls; ``"tf32"``: fp32 tensors, TF32 tensor cores for convolutions and matmuls (CUDA; the CPU computes
    fp32); ``"3xtf32"``: as ``"fp32"`` (the split convolutions of ``split_tf32`` switch TF32 on for their own
    three products only); ``"bf16"``: bf16 autocast (the logits and every norm are fp32). ``autotune``: cuDNN's
    autotuner on (``deepfool`` then pads the active batch to a few recurring sizes)."""
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.benchmark = bool(autotune)
    try:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            yield
    finally:
        (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.benchmark) = old


def _check(x: torch.Tensor, overshoot: float, max_iter: int, candidates: int | None, before: str, grad_mode: str,
           batch_size: int | None, precision: str = "fp32") -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError(f"deepfool: x must be a float tensor [N, ...] of inputs in [0, 1], got "
                         f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
    if not x.is_floating_point():
        raise ValueError(f"deepfool: x must be float in [0, 1] (convert uint8 images with fralkit.data.to_float), got {x.dtype}")
    if overshoot < 0:
        raise ValueError(f"deepfool: overshoot must be >= 0, got {overshoot}")
    if max_iter < 1:
        raise ValueError(f"deepfool: max_iter must be >= 1, got {max_iter}")
    if candidates is not None and candidates < 2:
        raise ValueError(f"deepfool: candidates (top-k classes incl. the predicted one) must be >= 2 or None, got {candidates}")
    if before not in DEEPFOOL_BEFORE:
        raise ValueError(f"deepfool: unknown before={before!r}; valid: {list(DEEPFOOL_BEFORE)}")
    if grad_mode not in DEEPFOOL_GRAD_MODES:
        raise ValueError(f"deepfool: unknown grad_mode={grad_mode!r}; valid: {list(DEEPFOOL_GRAD_MODES)}")
    if precision not in DEEPFOOL_PRECISIONS:
        raise ValueError(f"deepfool: unknown precision={precision!r}; valid: {list(DEEPFOOL_PRECISIONS)}")
    if precision == "3xtf32" and grad_mode == "batched":
        raise ValueError("deepfool: precision='3xtf32' computes its input gradients in a custom backward that "
                         "vmap cannot batch; use grad_mode='loop'")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"deepfool: batch_size must be positive or None, got {batch_size}")


def _wide(t: torch.Tensor) -> torch.Tensor:
    """Logits of bf16 / fp16 arithmetic as fp32; fp32 and fp64 as they are."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def _norms(r: torch.Tensor) -> torch.Tensor:
    return r.flatten(1).norm(dim=1)


def _nearest_step(model: nn.Module, xa: torch.Tensor, ca: torch.Tensor, grad_mode: str):
    """For active iterates ``xa`` and candidates ``ca`` ``[m, k]`` (``ca[:, 0]`` = original label): the
    linearised distance ``pert`` ``[m]`` to the nearest boundary and its unit normal ``w / ||w||``."""
    xa = xa.detach().requires_grad_(True)
    logits = _wide(model(xa))
    if logits.ndim != 2:
        raise ValueError(f"deepfool: the model must return logits [N, C], got shape {tuple(logits.shape)}")
    m, k = ca.shape
    diffs = logits.gather(1, ca[:, 1:]) - logits.gather(1, ca[:, :1])  # f'_c, [m, k-1]
    fabs = diffs.detach().abs()
    best_pert = torch.full((m,), float("inf"), device=xa.device, dtype=xa.dtype)
    best_w = torch.zeros_like(xa)
    best_wn = torch.ones(m, device=xa.device, dtype=xa.dtype)
    shape = (m,) + (1,) * (xa.ndim - 1)

    def consider(j: int, w: torch.Tensor) -> None:
        wn = _norms(w)
        pert = torch.where(wn > 0, fabs[:, j] / wn.clamp_min(torch.finfo(wn.dtype).tiny), torch.full_like(wn, float("inf")))
        better = pert < best_pert
        best_pert.copy_(torch.where(better, pert, best_pert))
        best_wn.copy_(torch.where(better, wn, best_wn))
        best_w.copy_(torch.where(better.view(shape), w, best_w))

    if grad_mode == "batched" and k > 2:
        # One vmapped backward for all k - 1 candidates (cotangents +1 at c and -1 at k0).
        eye = torch.zeros(k - 1, m, logits.shape[1], device=xa.device, dtype=logits.dtype)
        rows = torch.arange(m, device=xa.device)
        for j in range(k - 1):
            eye[j, rows, ca[:, j + 1]] += 1.0
            eye[j, rows, ca[:, 0]] -= 1.0
        (grads,) = torch.autograd.grad(logits, xa, grad_outputs=eye, is_grads_batched=True)
        for j in range(k - 1):
            consider(j, grads[j])
    else:
        for j in range(k - 1):
            (w,) = torch.autograd.grad(diffs[:, j].sum(), xa, retain_graph=j < k - 2)
            consider(j, w)
    step = ((best_pert + 1e-4) / best_wn).view(shape) * best_w
    return best_pert, step


def _bucket(m: int) -> int:
    """The padded size of an active batch of ``m``: the next of 64, 96, 128, 192, ... (``2^k`` and ``1.5 * 2^k``),
    so the shrinking batch takes a few recurring shapes (at most a third of the rows are padding)."""
    size = 64
    while size < m:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return size


def _padded(idx: torch.Tensor, pad: bool) -> torch.Tensor:
    """``idx`` repeated at its first entry up to ``_bucket(len(idx))`` rows (``pad``), else itself; the extra rows
    are copies of a real sample, computed and dropped (the samples of an eval-mode model are independent)."""
    m = idx.numel()
    if not pad or m == 0 or _bucket(m) == m:
        return idx
    return torch.cat([idx, idx[:1].expand(_bucket(m) - m)])


def _deepfool_chunk(model: nn.Module, x0: torch.Tensor, *, overshoot: float, max_iter: int, candidates: int | None,
                    clamp: bool, before: str, grad_mode: str, return_adv: bool, pad: bool = False) -> DeepFoolResult:
    n = x0.shape[0]
    dev = x0.device
    with torch.no_grad():
        logits0 = _wide(model(x0))
    num_classes = logits0.shape[1]
    if num_classes < 2:
        raise ValueError(f"deepfool: the model must have at least 2 classes, got {num_classes}")
    k = num_classes if candidates is None else min(int(candidates), num_classes)
    cand = logits0.topk(k, dim=1).indices  # candidate classes, fixed at x0 (as the reference); cand[:, 0] = label
    label = cand[:, 0].clone()

    r_tot = torch.zeros_like(x0)
    x_cur = x0.clone()
    r_before = torch.zeros(n, device=dev, dtype=x0.dtype)
    r_after = torch.zeros(n, device=dev, dtype=x0.dtype)
    iters = torch.zeros(n, device=dev, dtype=torch.int64)
    flipped = torch.zeros(n, device=dev, dtype=torch.bool)
    adv_label = label.clone()
    active = torch.arange(n, device=dev)

    for _ in range(max_iter):
        if active.numel() == 0:
            break
        rows = _padded(active, pad)
        pert, step = _nearest_step(model, x_cur[rows], cand[rows], grad_mode)
        pert, step = pert[:active.numel()], step[:active.numel()]
        movable = torch.isfinite(pert)
        if not bool(movable.all()):  # zero gradient towards every candidate: cannot move, stays unflipped
            active, step = active[movable], step[movable]
            if active.numel() == 0:
                break
        x0a = x0[active]
        prev_norm = _norms(x_cur[active] - x0a)
        r_tot[active] += step.detach()
        lin = x0a + r_tot[active]
        x_new = x0a + (1.0 + overshoot) * r_tot[active]
        if clamp:
            lin, x_new = lin.clamp(0.0, 1.0), x_new.clamp(0.0, 1.0)
        x_cur[active] = x_new
        iters[active] += 1
        r_after[active] = _norms(x_new - x0a)
        r_before[active] = _norms(lin - x0a) if before == "boundary" else prev_norm
        with torch.no_grad():
            check = x_new if not pad else x_cur[_padded(active, True)]
            new_label = model(check).argmax(1)[:active.numel()]
        changed = new_label != label[active]
        adv_label[active] = new_label
        flipped[active[changed]] = True
        active = active[~changed]

    d_theta = 0.5 * (r_before + r_after)
    return DeepFoolResult(d_theta=d_theta, r_before=r_before, r_after=r_after, iters=iters, flipped=flipped,
                          label=label, adv_label=adv_label, x_adv=x_cur if return_adv else None)


def deepfool(
    model: nn.Module,
    x: torch.Tensor,
    *,
    overshoot: float = 0.02,
    max_iter: int = 50,
    candidates: int | None = None,
    clamp: bool = False,
    before: str = "boundary",
    batch_size: int | None = 1024,
    grad_mode: str = "loop",
    fold_bn: bool = False,
    precision: str = "fp32",
    channels_last: bool = False,
    autotune: bool = False,
    pad: bool = False,
    return_adv: bool = False,
    progress: bool = False,
) -> DeepFoolResult:
    """Batched L2 DeepFool on ``x.device``; per sample the FARMUR distance ``d_theta(x)`` (Eq. 8).

    The model is put in eval mode for the attack and its mode is restored after; computations are fp32
    (no autocast, no TF32) unless ``precision`` says otherwise. See the module docstring for the iteration,
    Eq. 8 and the clamping choice.

    Args:
        model: classifier taking inputs in [0, 1] and returning logits ``[N, C]``.
        x: inputs ``[N, C, H, W]`` (any ``[N, ...]``), float in [0, 1] (computed in fp32; float64 stays float64).
        overshoot: eta in ``x0 + (1 + eta) r_tot`` (0.02, the reference value).
        max_iter: at most this many steps per sample (50, the reference value).
        candidates: use only the top-k classes at ``x0`` (the predicted one included) as targets, as the
            reference does for many-class sets; None = all classes.
        clamp: keep the iterates in [0, 1] (default False, as the reference and FARMUR).
        before: the reading of ``r_max`` in Eq. 8: ``"boundary"`` (default) or ``"iterate"``.
        batch_size: samples attacked together (memory bound: the forward graph of this many inputs is kept
            for the k - 1 backward passes); None = all at once.
        grad_mode: ``"loop"`` (k - 1 backward passes over one forward graph) or ``"batched"`` (one vmapped
            backward with ``is_grads_batched``; same numbers, sometimes faster on GPU).
        fold_bn: attack a copy of the eval-mode model with every batch norm that follows a convolution
            folded into it (``fralkit.models.FoldedTwin``): the same function with fewer layers, equal up to float
            rounding. Off by default: on one H200 (ResNet-18, 10,000 images) it saved 6 % and moved one distance of
            200 by 1.01e-3 relative to the reference (a sample whose iteration count changed), where the model
            itself stayed within 3.8e-4.
        precision: ``"fp32"`` (default; the distances of the reference to float rounding), ``"tf32"`` (TF32
            tensor cores for convolutions and matmuls on CUDA), ``"3xtf32"`` (every dense convolution as three TF32
            products of split operands, ``fralkit.attacks.split_tf32``: on tensor cores, with about 20 times fp32's
            rounding noise in the distances on one H200; needs ``grad_mode="loop"``) or ``"bf16"`` (bf16
            autocast); logits, norms and iterates stay fp32 in every case. ``benchmarks/deepfool_speed.py``
            measures each against the reference's distances.
        channels_last: run the model in channels-last memory layout (CUDA; the same numbers up to rounding).
        autotune: cuDNN's autotuner on (CUDA): the shrinking active batch is padded to recurring sizes (``2^k``,
            ``1.5 * 2^k``) with copies of one of its samples, so each size is tuned once per process; the same
            distances up to the rounding of the kernels chosen.
        pad: pad the shrinking active batch to those recurring sizes without the autotuner (CUDA; ``autotune``
            pads anyway). Every new batch shape costs cuDNN its plans, and MobileNetV2's depthwise convolutions
            compile kernels for it; the shrinking batch takes a new size nearly every iteration, so padding bounds
            that set-up to about a dozen shapes per process. The same distances up to the kernels' rounding.
        return_adv: also return the last iterates.
        progress: show a progress bar over the batches.

    Returns:
        ``DeepFoolResult`` with per-sample ``d_theta``, ``r_before``, ``r_after``, ``iters``, ``flipped``,
        ``label``, ``adv_label`` (and ``x_adv``).
    """
    _check(x, overshoot, max_iter, candidates, before, grad_mode, batch_size, precision)
    was_training = model.training
    model.eval()
    dev = x.device
    x = x.detach() if x.dtype == torch.float64 else x.detach().float()  # float64 stays (exact checks)
    attacked = model
    if fold_bn:
        twin = FoldedTwin(model)
        attacked = twin.module if twin.folded else model
    if precision == "3xtf32":
        attacked = attacked if attacked is not model else frozen_copy(model)  # the folded twin is a copy already
        split_convolutions(attacked)
    if channels_last and dev.type == "cuda":
        attacked = attacked if attacked is not model else copy.deepcopy(model)
        attacked = attacked.to(memory_format=torch.channels_last)
    n = x.shape[0]
    step = n if batch_size is None else int(batch_size)
    starts = range(0, n, max(1, step))
    if progress:
        starts = progress_bar(starts, desc="deepfool", total=len(starts))
    parts = []
    try:
        pad = bool((autotune or pad) and dev.type == "cuda")
        with _arithmetic(dev, precision, autotune=bool(autotune and pad)):
            for s in starts:
                xs = x[s:s + step]
                if channels_last and dev.type == "cuda" and xs.ndim == 4:
                    xs = xs.contiguous(memory_format=torch.channels_last)
                parts.append(_deepfool_chunk(attacked, xs, overshoot=overshoot, max_iter=max_iter,
                                             candidates=candidates, clamp=clamp, before=before, grad_mode=grad_mode,
                                             return_adv=return_adv, pad=pad))
    finally:
        model.train(was_training)
    if not parts:
        empty = torch.zeros(0, device=dev)
        long_ = torch.zeros(0, device=dev, dtype=torch.int64)
        return DeepFoolResult(empty, empty, empty, long_, torch.zeros(0, device=dev, dtype=torch.bool), long_, long_,
                              x.clone() if return_adv else None)
    cat = {f.name: (None if getattr(parts[0], f.name) is None else torch.cat([getattr(p, f.name) for p in parts]))
           for f in fields(DeepFoolResult)}
    return DeepFoolResult(**cat)
