"""The fast path of ``fit`` on CUDA: the whole training step captured as one CUDA graph, the attack on a
batch-norm-folded twin, the PGD loop alone as a CUDA graph, and ``torch.compile``.

``CapturedStep`` replays ``fit``'s whole step (gather, augmentation, twin refresh, attack, loss, backward,
clipping, optimiser step, the epoch's running sums) as one CUDA graph: the default on CUDA (``cuda_graph=True``)
for the fixed-shape objectives (``Objective.graphable``). The optimiser reads its learning rate from a device
tensor that ``fit`` writes before every replay (``graph_safe_optimizer``). PGD runs the model in eval mode, where
batch norm is a fixed affine map: ``fralkit.models.FoldedTwin`` folds it into the convolutions (bf16 weights under
autocast) and is refreshed from the model before every step with multi-tensor kernels (``fold_bn=True``, also on
CPU: the same attack with fewer
layers). FairAT keeps an eager step and replays only its fixed-shape PGD loops
(``_GraphedAttack``); ``compile=True`` wraps the model and the twin in ``torch.compile`` (default mode: its
kernels are captured by ``CapturedStep`` like any other, so compile and the whole-step graph combine). CPU ignores
``cuda_graph`` and ``compile``. ``benchmarks/trades_throughput.py`` times a TRADES epoch against a plain fp32
reference loop.
"""
from __future__ import annotations

import importlib.util
import warnings
from typing import Callable

import torch
import torch.nn as nn

from ..attacks.pgd import pgd
from ..models import FoldedTwin  # batch-norm folding lives with the models: attacks and inference use it too
from ..runtime import autocast
from .objectives import ATTACK_OF

__all__ = ["COMPILE_MODES", "FoldedTwin", "CapturedStep", "attack_setup", "compile_available", "compiled",
           "graph_safe_optimizer"]


# torch.compile modes that leave CUDA graphs to ``CapturedStep`` (the compiler's own graphs cannot be captured).
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")


def compiled(module: nn.Module, on: bool | str) -> nn.Module:
    """``torch.compile(module)`` when ``on`` (CUDA only in ``fit``; a string is the mode, one of
    ``COMPILE_MODES``), else the module itself. No mode makes CUDA graphs of the compiler's own, so the compiled
    kernels can be captured inside ``CapturedStep``. Without Triton (the compiler's GPU backend) it warns and
    returns the module: the FRAL loop compiles by default (``FRALConfig.compile``) and must still run there."""
    if not on:
        return module
    if not compile_available():
        warnings.warn("torch.compile needs Triton, which is not installed: the model runs uncompiled",
                      RuntimeWarning, stacklevel=2)
        return module
    return torch.compile(module, mode=on if isinstance(on, str) else None)


def compile_available() -> bool:
    """Whether ``torch.compile``'s default GPU backend can run here (it generates Triton kernels)."""
    return importlib.util.find_spec("triton") is not None


def attack_setup(objective: str, options: dict, model: nn.Module, net: nn.Module, *, eps: float, alpha: float,
                 steps: int, amp: bool, on_cuda: bool, fold_bn: bool, cuda_graph: bool,
                 compile: bool | str) -> tuple[Callable | None, "FoldedTwin | None"]:
    """The attack ``fit`` hands to an adversarial objective, ``(model, x, target) -> x_adv``, and the twin to
    refresh after every optimiser step; ``(None, None)`` when the objective attacks the model itself."""
    if objective not in ("pgd_at", "trades", "fairat"):
        return None, None
    attack_loss, start = ATTACK_OF[options["base"] if objective == "fairat" else objective]
    twin = None
    attack_net = net
    if fold_bn:
        candidate = FoldedTwin(model, dtype=torch.bfloat16 if amp else None)
        if candidate.folded:
            twin = candidate
            attack_net = compiled(twin.module, compile if on_cuda else False)
    if cuda_graph and on_cuda:
        graphed = _GraphedAttack(attack_loss, start, eps, alpha, steps, amp)
        return (lambda m, x, t: graphed(attack_net, x, t)), twin
    if twin is not None:
        return (lambda m, x, t: pgd(attack_net, x, t if attack_loss == "ce" else None, eps=eps, alpha=alpha,
                                    steps=steps, loss=attack_loss, random_start=start)), twin
    return None, None


def graph_safe_optimizer(opt: torch.optim.Optimizer) -> tuple[Callable[[], None] | None, str]:
    """Prepare ``opt`` for a captured step: its learning rate becomes a 0-d device tensor, read by every replay.

    SGD (fused or not) runs as fused SGD, whose kernel takes the lr tensor (the multi-tensor SGD would read it on
    the host); Adam / AdamW must already be fused and are switched to ``capturable``. All parameter groups share
    one lr tensor (``fit`` schedules one lr for every group). Returns ``(restore, "")``,
    where ``restore()`` puts back the optimiser's settings and a float lr, or ``(None, reason)`` when ``opt``
    cannot run inside a graph (``fit`` then trains eagerly).
    """
    groups = opt.param_groups
    if type(opt) is torch.optim.SGD:
        if any(g.get("differentiable") for g in groups):
            return None, "differentiable SGD has no fused kernel"
        keys = ("fused", "foreach")
    elif type(opt) in (torch.optim.Adam, torch.optim.AdamW):
        if not all(g.get("fused") for g in groups):
            return None, f"{type(opt).__name__} is not fused"
        keys = ("capturable",)
    else:
        return None, f"{type(opt).__name__} is not one of SGD, fused Adam, fused AdamW"
    params = [p for g in groups for p in g["params"]]
    if not params or any(p.device.type != "cuda" for p in params):
        return None, "the optimiser's parameters are not on CUDA"
    saved = [{k: g.get(k) for k in (*keys, "lr")} for g in groups]
    lr = torch.tensor(float(groups[0]["lr"]), dtype=torch.float32, device=params[0].device)
    for g in groups:  # one tensor for all groups: fit's schedule sets one lr for every group
        if "fused" in keys:
            g["fused"], g["foreach"] = True, False
        else:
            g["capturable"] = True
        g["lr"] = lr

    def restore() -> None:
        for g, old in zip(groups, saved):
            g.update(old)
            g["lr"] = float(lr)

    return restore, ""


class CapturedStep:
    """A step function without arguments, run eagerly ``warmup`` times, then captured once and replayed.

    ``fn`` reads its inputs from tensors that stay in place (an index buffer, the lr tensor) and writes its results
    in place (parameters, optimiser state, running sums), so a replay is the next step. The warm-up calls are real
    steps, run on a side stream (cuDNN / cuBLAS set-up and the optimiser's lazily created state stay out of the
    graph); the call that captures then replays, so every call is one step. Random draws (augmentation, the attack's
    start) come from the CUDA generator, which advances on every replay and follows ``torch.manual_seed``.
    """

    def __init__(self, fn: Callable[[], None], warmup: int = 2):
        self.fn, self.warmup, self.calls = fn, int(warmup), 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.side = torch.cuda.Stream()

    def __call__(self) -> None:
        if self.graph is None and self.calls < self.warmup:
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                self.fn()
            torch.cuda.current_stream().wait_stream(self.side)
            self.calls += 1
            return
        if self.graph is None:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.fn()
            self.graph = graph
        self.graph.replay()


class _GraphedAttack:
    """The fixed-shape PGD loop of one objective captured as a CUDA graph (one per batch shape).

    Parameters and batch-norm buffers are read in place, so optimiser updates are seen by every replay; the
    random start draws from the CUDA generator, which advances on each replay. Other shapes run eagerly.
    """

    def __init__(self, loss: str, start: str, eps: float, alpha: float, steps: int, amp: bool):
        self.kw = dict(eps=eps, alpha=alpha, steps=steps, loss=loss, random_start=start)
        self.amp = amp
        self.graphs: dict = {}

    def _run(self, model, x, t):
        with autocast(x.device, self.amp, cache=False):
            return pgd(model, x, t if self.kw["loss"] == "ce" else None, **self.kw)

    def __call__(self, model, x, t):
        key = (tuple(x.shape), tuple(t.shape), t.dtype)
        if key not in self.graphs:
            if len(self.graphs) >= 2:  # the full batch shape and one more; anything else runs eagerly
                return self._run(model, x, t)
            sx, st = x.detach().clone(), t.detach().clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self._run(model, sx, st)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self._run(model, sx, st)
            self.graphs[key] = (graph, sx, st, out)
        graph, sx, st, out = self.graphs[key]
        sx.copy_(x)
        st.copy_(t)
        graph.replay()
        return out.clone()
