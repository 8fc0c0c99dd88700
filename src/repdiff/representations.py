"""Hooks and pooling, in one place: read (or edit) the activations of named sites of any torch model (Ch. 11-14).

One vocabulary throughout: a **site** is where an activation is read (a module name, or
``"<resnet>.post_norm2"`` for the input of a diffusers resnet's ``conv2``), **pooling** turns a map into one
value per channel (``"max"`` or ``"mean"``), and **t** is the training timestep the input is noised to.

The paper's "representation" of a deep denoiser is the output of one inner module, pooled over space
(Algorithm 1 of the paper: re-noise the image, one forward pass, read a layer, score its spikiness).
:class:`ActivationRecorder` is a context manager that registers forward hooks on modules named as in
``model.named_modules()`` (e.g. ``"mid_block.resnets.0"`` or ``"up_blocks.0.resnets.2.nonlinearity"``) and
**always removes them on exit**, also when the body raises, so a model never keeps stray hooks::

    with ActivationRecorder(unet, ["mid_block", "up_blocks.0.resnets.0"]) as rec:
        unet(x, t)
    h = spatial_pool(rec["mid_block"], "max")        # (N, C)

A module that runs several times in one forward pass is recorded at its last call by default
(``keep="last"``); ``keep="all"`` keeps every call. diffusers' ``ResnetBlock2D`` calls its one
``nonlinearity`` module three times: on GroupNorm(input) before the first convolution, on the time
embedding (before ``time_emb_proj``), and on GroupNorm(·) just before the second convolution. The last,
third call is what ``…resnets.k.nonlinearity`` records by default, the layer the paper's released detector
reads (``tests/test_representations.py`` counts the calls).

- :func:`list_modules`: names of the modules matching a glob pattern (which layers exist?).
- :func:`resolve_site`: the module behind a site name (``post_norm2`` sites: the paper's detection layer).
- :func:`pool` (Chapter 11's name: :func:`spatial_pool`): ``(N, C, H, W)`` → ``(N, C)`` by max or mean.
- :func:`edit_outputs`, :func:`count_calls`: replace module outputs, count model calls (steering, Ch. 14).
- :func:`check_separation`, :func:`check_extreme_row`: Chapter 11's checks (a score separates memorized
  from generalized samples, or barely does; one layer is the worst of a sweep).
- :func:`unet_features`: Chapter 11's one-pass feature extractor for a noise-predicting ``UNet2DModel``:
  re-noise clean images to a training step t, one forward pass, pooled features of chosen layers.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from repdiff.metrics import detection_metrics
from repdiff.notebook import check_range

__all__ = ["POOLINGS", "POST_NORM2", "ActivationRecorder", "list_modules", "resolve_site", "edit_outputs",
           "count_calls", "pool", "spatial_pool", "unet_features", "check_separation", "check_extreme_row"]

#: the spatial poolings of a feature map (the paper: max)
POOLINGS = ("max", "mean")
#: suffix of a site that reads a diffusers resnet's SiLU(GroupNorm2(.)), the input of its ``conv2``
POST_NORM2 = ".post_norm2"


def list_modules(model: torch.nn.Module, pattern: str = "*", *, leaf_only: bool = False) -> list[str]:
    """Names of ``model``'s submodules that match the glob ``pattern`` (e.g. ``"up_blocks.*.resnets.*"``)."""
    names = []
    for name, mod in model.named_modules():
        if not name or not fnmatch.fnmatchcase(name, pattern):
            continue
        if leaf_only and any(True for _ in mod.children()):
            continue
        names.append(name)
    return names


def _first_tensor(output: Any) -> torch.Tensor:
    """The tensor a module returned (the first one, for tuples; ``.sample`` for diffusers outputs)."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "sample") and isinstance(output.sample, torch.Tensor):
        return output.sample
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot record a module output of type {type(output).__name__}: no tensor found")


def resolve_site(model: torch.nn.Module, site: str) -> tuple[torch.nn.Module, bool]:
    """(module to hook, read its input rather than its output) for a site name (Chapters 11-14).

    ``"X.post_norm2"`` is the input of ``X.conv2`` (a diffusers resnet's SiLU(GroupNorm2(.)), the paper's
    detection layer); any other name is the module of that name, whose output is read. Unknown names raise
    ``KeyError`` listing the closest valid names.
    """
    pre = site.endswith(POST_NORM2)
    name = site[: -len(POST_NORM2)] + ".conv2" if pre else site
    modules = dict(model.named_modules())
    if name not in modules:
        close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
        raise KeyError(
            f"the model has no module named {name!r}"
            + (f"; close names: {close}" if close else "")
            + " (list them with repdiff.representations.list_modules(model, pattern))"
        )
    return modules[name], pre


class ActivationRecorder:
    """Context manager recording the activations at named sites during forward passes (Chapters 11-14).

    Args:
        model: any ``torch.nn.Module``.
        sites: one site name or several: module names as in ``model.named_modules()`` (their outputs are
            recorded) or ``"<resnet>.post_norm2"`` (the input of that resnet's ``conv2``, :func:`resolve_site`).
        keep: ``"last"`` keeps the activation of a site's last call; ``"all"`` keeps a list of every call.
        transform: optional function applied to each recorded tensor (e.g. :func:`pool`), so large
            maps need not be kept.
        detach: record detached tensors (default) or keep the graph (for gradients w.r.t. features).
        to_cpu: move recorded tensors to the CPU.

    Recorded tensors are read with ``rec[site]`` (or ``rec.outputs``). Unknown names raise ``KeyError`` on
    entry, listing the closest valid names; all hooks are removed on exit, whatever happened inside.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        sites: str | Sequence[str],
        *,
        keep: str = "last",
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        detach: bool = True,
        to_cpu: bool = False,
    ) -> None:
        if keep not in ("last", "all"):
            raise ValueError(f"keep must be 'last' or 'all', got {keep!r}")
        self.model = model
        self.sites = [sites] if isinstance(sites, str) else list(sites)
        if not self.sites:
            raise ValueError("give at least one site name")
        if len(set(self.sites)) != len(self.sites):
            raise ValueError(f"site names repeat: {self.sites}")
        self.keep, self.transform, self.detach, self.to_cpu = keep, transform, detach, to_cpu
        self.outputs: dict[str, Any] = {}
        self._handles: list[Any] = []

    def _record(self, name: str, value: Any) -> None:
        t = _first_tensor(value)
        if self.detach:
            t = t.detach()
        if self.transform is not None:
            t = self.transform(t)
        if self.to_cpu:
            t = t.cpu()
        if self.keep == "last":
            self.outputs[name] = t
        else:
            self.outputs.setdefault(name, []).append(t)

    def __enter__(self) -> ActivationRecorder:
        modules = {s: resolve_site(self.model, s) for s in self.sites}
        self.outputs = {}
        try:
            for name, (mod, pre) in modules.items():
                if pre:
                    hook = mod.register_forward_pre_hook(lambda m, args, name=name: self._record(name, args))
                else:
                    hook = mod.register_forward_hook(lambda m, args, out, name=name: self._record(name, out))
                self._handles.append(hook)
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.remove()
        return False  # never swallow an exception

    def remove(self) -> None:
        """Remove every hook this recorder registered (called on exit; safe to call twice)."""
        while self._handles:
            self._handles.pop().remove()

    def clear(self) -> None:
        """Forget what was recorded (the hooks stay while inside the ``with`` block)."""
        self.outputs = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self.outputs:
            raise KeyError(f"nothing recorded for {name!r} (was it called inside the with block?)")
        return self.outputs[name]


@contextmanager
def edit_outputs(model: torch.nn.Module,
                 edits: Mapping[str, Callable[[torch.Tensor], torch.Tensor | None]]) -> Iterator[None]:
    """Replace the outputs of named modules during the ``with`` block (Chapter 14's steering).

    ``edits[site](output)`` returns the new output, or ``None`` to leave it as it is. Sites are module names
    (outputs only: a ``post_norm2`` site has no output to replace). Hooks are removed on exit, always.
    """
    handles = []
    try:
        for site, edit in edits.items():
            mod, pre = resolve_site(model, site)
            if pre:
                raise ValueError(f"{site}: only module outputs can be edited, not the input of a module")
            handles.append(mod.register_forward_hook(lambda m, args, out, edit=edit: edit(out)))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def count_calls(model: torch.nn.Module, first: int = 0) -> Iterator[dict[str, int]]:
    """Count the forward calls of ``model`` during the ``with`` block, from ``first``: yields ``{"calls": n}``,
    updated before each call runs (so hooks inside the call read its 1-based number). Chapter 14."""
    state = {"calls": int(first)}

    def count(m: torch.nn.Module, args: Any) -> None:
        state["calls"] += 1

    handle = model.register_forward_pre_hook(count)
    try:
        yield state
    finally:
        handle.remove()


def pool(h: torch.Tensor, pooling: str = "max") -> torch.Tensor:
    """Pool activations over space: ``(N, C, H, W)`` → ``(N, C)`` by ``"max"`` (the paper's choice) or ``"mean"``.

    ``(N, C)`` passes through; ``(N, L, C)`` tokens (a transformer block's output) pool over the ``L`` tokens;
    other shapes ``(N, C, ...)`` are flattened after the channel axis. Chapters 11-14.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if h.ndim < 2:
        raise ValueError(f"expected a batch of features (N, C, ...), got shape {tuple(h.shape)}")
    if h.ndim == 2:
        return h
    flat = h.transpose(1, 2) if h.ndim == 3 else h.flatten(2)
    return flat.amax(dim=-1) if pooling == "max" else flat.mean(dim=-1)


def spatial_pool(h: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """:func:`pool` under Chapter 11's name: ``(N, C, H, W)`` → ``(N, C)`` by ``mode`` ``"max"`` or ``"mean"``."""
    return pool(h, mode)


@torch.no_grad()
def unet_features(
    unet: torch.nn.Module,
    alphas_cumprod: torch.Tensor,
    x0: torch.Tensor,
    timestep: int,
    layers: str | Sequence[str],
    *,
    pool: str = "max",
    seed: int = 0,
    batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Pooled features of ``layers`` for clean images ``x0`` ``(N, C, H, W)`` re-noised to step ``timestep``.

    x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε with ε from a CPU generator seeded ``seed`` (same noise on every device),
    then one forward pass of the noise-predicting ``unet`` (Chapter 11; the paper's detector, prompt-free).

    Returns:
        ``{layer: (N, C_layer)}`` float32 on the CPU.
    """
    T = len(alphas_cumprod)
    if int(timestep) != timestep or not 0 <= timestep < T:
        raise ValueError(f"timestep must be an integer in [0, {T - 1}], got {timestep!r}")
    if x0.ndim != 4:
        raise ValueError(f"x0 must have shape (N, C, H, W), got {tuple(x0.shape)}")
    if not torch.isfinite(x0).all():
        raise ValueError("x0 contains NaN or infinity")
    device = next(unet.parameters()).device
    a = float(alphas_cumprod[int(timestep)])
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    xt_all = a**0.5 * x0.float().cpu() + (1 - a) ** 0.5 * noise
    names = [layers] if isinstance(layers, str) else list(layers)
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    with ActivationRecorder(unet, names, transform=lambda h: spatial_pool(h.float(), pool), to_cpu=True) as rec:
        for start in range(0, len(xt_all), batch_size):
            xt = xt_all[start : start + batch_size].to(device)
            unet(xt, torch.full((len(xt),), int(timestep), device=device))
            for n in names:
                out[n].append(rec[n])
            rec.clear()
    return {n: torch.cat(v) for n, v in out.items()}


def check_separation(
    what: str, scores_mem: torch.Tensor, scores_gen: torch.Tensor, *, low: float | None = None,
    high: float | None = None,
) -> float:
    """AUROC of a score (higher = memorized) checked against ``[low, high]`` (Chapter 11).

    ``low`` carries a claim "this score separates" (shuffled labels fail it), ``high`` a claim "this score
    barely separates" (a score that does separate fails it). ``scores_*``: ``(N,)``. Returns the AUROC.
    """
    auroc = detection_metrics(scores_mem, scores_gen)["auroc"]
    check_range(f"{what}: AUROC", auroc, low=low, high=high)
    return auroc


def check_extreme_row(what: str, table: np.ndarray, rows: Sequence[str], claimed: str, *, margin: float = 0.0) -> float:
    """Check that row ``claimed`` of ``table`` ``(R, C)`` has the lowest mean, by more than ``margin``.

    Prints and raises :class:`repdiff.CheckFailed` otherwise. Chapter 11 uses it for "this layer is the
    worst choice" over a layers × noise-levels AUROC table. Returns the gap (next-lowest mean − its mean).
    """
    table = np.asarray(table, dtype=float)
    if table.ndim != 2 or table.shape[0] != len(rows) or claimed not in rows:
        raise ValueError(f"table must be (len(rows), C) and claimed one of rows; got {table.shape}, {claimed!r}")
    means = table.mean(1)
    i = list(rows).index(claimed)
    gap = float(np.delete(means, i).min() - means[i])
    check_range(f"{what}: mean over columns, next-lowest row minus {claimed}", gap, low=margin)
    return gap
