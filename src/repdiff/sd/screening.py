"""Screen the tiny SD's generations once, label each one, and share the result between Chapters 12-14.

:func:`screen` generates images of the three prompt groups of the shipped model (``data/tiny_sd/prompts``) with
the screening protocol (DDIM, 30 steps, guidance 7.5) and labels **each generation** by the 1/3 rule of
Chapter 12 against the training images (the planted posters, the control posters seen once, and the
compositional training images, all after a VAE round trip):

- ``"planted"``: generations of planted titles; ``own_copy`` marks those that are copies of their *own*
  training poster (nearest training image = that poster, nearest / second-nearest distance < 1/3);
- ``"control"``: generations of control titles (posters seen once in training);
- ``"held_out"``: generations of compositional captions absent from training.

The result is cached on disk (:mod:`repdiff.sd.cache`: ``$REPDIFF_CACHE`` or ``~/.cache/repdiff``), keyed by the
model, the prompts, the settings and the course's code, so the chapters of one build generate once.
:func:`score_generations` runs the paper's detector and Wen et al.'s score on a screening; :func:`compare` gives
AUROC and TPR at 1 % FPR with bootstrap intervals as a small dataclass (glue it whole with
:func:`repdiff.glue_all`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from repdiff import metrics
from repdiff.data import captioned, scenes
from repdiff.sd import cache, detection, pipeline, tiny_sd

__all__ = ["GROUPS", "Screening", "screen", "reference_set", "LabelSummary", "label_summary", "Scores",
           "score_generations", "Comparison", "layer_sweep", "own_copies",
           "training_images", "words_split", "background_matches", "design_values",
           "compare"]

GROUPS = ("planted", "control", "held_out")


@dataclass
class Screening:
    """One generation per row (Chapters 12-14).

    Attributes:
        captions: ``N`` prompts. ``group``: ``(N,)`` one of :data:`GROUPS`. ``title``: ``(N,)`` index of the
            prompt in its group's list (several generations of one planted title share it).
        images: ``(N, 3, H, W)`` float32 in [-1, 1]. ``latents0``: ``(N, C, h, w)`` the starting noise.
        latents_at: ``(N, C, h, w)`` the latents entering step ``keep_step`` (or ``None``).
        wen_first, wen_mean: ``(N,)`` Wen et al.'s ‖ε_c − ε_∅‖ at the first step and over all steps.
        nn_ratio: ``(N,)`` nearest / second-nearest distance to the training images. ``nn_kind``: ``(N,)``
            ``"planted"``, ``"control"`` or ``"train"``, the kind of the nearest one; ``nn_index`` its index.
        is_copy: ``(N,)`` ``nn_ratio < 1/3``. ``own_copy``: a copy whose nearest image is the prompt's own
            poster (planted and control rows only; always ``False`` for held-out rows).
    """

    captions: list[str]
    group: np.ndarray
    title: np.ndarray
    images: torch.Tensor
    latents0: torch.Tensor
    latents_at: torch.Tensor | None
    keep_step: int | None
    wen_first: np.ndarray
    wen_mean: np.ndarray
    nn_ratio: np.ndarray
    nn_kind: np.ndarray
    nn_index: np.ndarray
    is_copy: np.ndarray
    own_copy: np.ndarray
    seconds_per_image: float
    steps: int
    guidance: float

    def mask(self, group: str) -> np.ndarray:
        """``(N,)`` booleans: the rows of one group."""
        if group not in GROUPS:
            raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
        return self.group == group

    def copies(self) -> np.ndarray:
        """``(N,)`` the positives of Chapter 13: planted-title generations that copy their own poster."""
        return self.mask("planted") & self.own_copy

    def steering_rows(self, n: int) -> tuple[np.ndarray, int]:
        """``(rows, n_held)``, the rows Chapter 14 and Assignment 3 steer: the first ``n`` held-out rows whose
        caption does not end in "white background" (the white concept could not show), then the first ``n`` copies."""
        not_white = ~np.char.endswith(np.asarray(self.captions), "white background")
        held = np.nonzero(self.mask("held_out") & not_white)[0][:n]
        return np.r_[held, np.nonzero(self.copies())[0][:n]], len(held)


_REFERENCE: dict[str, tuple[torch.Tensor, np.ndarray, np.ndarray]] = {}


def training_images(pipe, path: str | Path | None = None) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """:func:`reference_set`, kept in memory and on disk (:func:`repdiff.sd.cache.cached`); Chapters 13-14."""
    key = [cache.fingerprint(pipe), str(path)]
    memo = cache.digest(*key)
    if memo not in _REFERENCE:
        d = cache.cached("reference", key, lambda: dict(zip(("images", "kind", "index"),
                                                            map(_store, reference_set(pipe, path)), strict=True)))
        _REFERENCE[memo] = d["images"], _restore(d["kind"]), _restore(d["index"])
    return _REFERENCE[memo]


def own_copies(pipe, images: torch.Tensor, group: str, titles: np.ndarray, *,
               path: str | Path | None = None) -> np.ndarray:
    """``(N,)`` booleans: is each image a copy (1/3 rule) of the training poster of its prompt ``titles[i]`` of
    ``group`` (``"planted"`` or ``"control"``)? Chapter 14 asks it of steered copies."""
    if group not in ("planted", "control") or len(titles) != len(images):
        raise ValueError(f"need group 'planted' or 'control' and one title per image, got {group!r}, "
                         f"{len(titles)} titles for {len(images)} images")
    ref, kind, index = training_images(pipe, path)
    ratio, nearest = _label(pipeline.as_model_images(images, (-1, 1)), ref)
    return (ratio < 1 / 3) & (kind[nearest] == group) & (index[nearest] == np.asarray(titles))


@torch.no_grad()
def reference_set(pipe, path: str | Path | None = None) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The training images the 1/3 rule compares against, after a VAE round trip.

    The planted posters and the control posters (``read_prompt_images``), then the compositional training
    images of the model's recipe (:func:`repdiff.sd.tiny_sd.make_dataset`). A generation goes through the VAE's
    decoder, so a perfect copy of a training image looks like its reconstruction, not like the image itself.

    Returns:
        ``(images (M, 3, H, W) in [-1, 1], kind (M,) "planted"/"control"/"train", index within the kind (M,))``.
    """
    path = Path(path) if path is not None else tiny_sd.default_model_path()
    planted = tiny_sd.read_prompt_images("memorized", path)
    control = tiny_sd.read_prompt_images("control", path)
    recipe = json.loads((path / "recipe.json").read_text())
    ds = tiny_sd.make_dataset(recipe)
    train = torch.from_numpy(ds.images[ds.kind == "compositional"])
    parts = [planted, control, train]
    kind = np.concatenate([np.full(len(x), k) for x, k in zip(parts, ("planted", "control", "train"), strict=True)])
    index = np.concatenate([np.arange(len(x)) for x in parts])
    rec = pipeline.decode_latents(pipe, pipeline.encode_images(pipe, torch.cat(parts), value_range=(-1, 1)))
    return rec, kind, index


def _label(images: torch.Tensor, ref: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(ratio (N,), nearest index into ref (N,)) by Euclidean distance of flattened images."""
    ratio = metrics.nn_distance_ratio(images, ref).numpy()
    nearest = torch.cdist(images.flatten(1), ref.flatten(1)).argmin(dim=1).numpy()
    return ratio, nearest


def _plan(n_planted: int, n_control: int, n_held_out: int, path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Prompts, groups and title indices: planted titles cycled to ``n_planted`` generations."""
    lists = {"planted": tiny_sd.read_prompts("memorized", path), "control": tiny_sd.read_prompts("control", path),
             "held_out": tiny_sd.read_prompts("held_out", path)}
    wanted = {"planted": n_planted, "control": n_control, "held_out": n_held_out}
    captions, group, title = [], [], []
    for g in GROUPS:
        n = wanted[g]
        if n < 0 or (g != "planted" and n > len(lists[g])):
            raise ValueError(f"asked for {n} {g} generations; the model has {len(lists[g])} {g} prompts")
        idx = np.arange(n) % len(lists[g])
        captions += [lists[g][i] for i in idx]
        group += [g] * n
        title += list(idx)
    return captions, np.asarray(group), np.asarray(title, dtype=np.int64)


def screen(pipe, *, n_planted: int = 64, n_control: int = 48, n_held_out: int = 64, steps: int = 30,
           guidance: float = 7.5, seed: int = 0, keep_step: int | None = None, path: str | Path | None = None,
           use_cache: bool = True, progress: bool = False) -> Screening:
    """Generate and label the three groups (Chapters 12-14); cached on disk (:func:`repdiff.sd.cache.cached`).

    ``n_planted`` generations take the planted titles in file order and start again from the first when the
    list runs out (the default 64 generations of the 48 shipped titles: the first 16 titles twice, the other
    32 once), each generation from its own noise; control and held-out prompts are taken in file order.
    One generator seeded ``seed`` draws all starting noises. ``keep_step`` also keeps the latents entering
    that step (Chapter 14 steers from there).
    """
    captions, group, title = _plan(n_planted, n_control, n_held_out, path)
    stored = cache.cached(
        "screening", [cache.fingerprint(pipe), captions, steps, guidance, seed, keep_step],
        lambda: _screen(pipe, captions, group, title, steps=steps, guidance=guidance, seed=seed,
                        keep_step=keep_step, path=path, progress=progress),
        use=use_cache)
    return Screening(**{f.name: _restore(stored[f.name]) for f in fields(Screening)})


def _screen(pipe, captions: list[str], group: np.ndarray, title: np.ndarray, *, steps: int, guidance: float,
            seed: int, keep_step: int | None, path: str | Path | None, progress: bool) -> dict:
    """Generate and label (:func:`screen`), as the stored form of a :class:`Screening` (:func:`_store`)."""
    t0 = time.perf_counter()
    gen = pipeline.generate(pipe, captions, steps=steps, guidance=guidance, seed=seed, keep_step=keep_step,
                            progress=progress)
    seconds = (time.perf_counter() - t0) / len(captions)
    ref, ref_kind, ref_index = training_images(pipe, path)
    ratio, nearest = _label(gen.images, ref)
    nn_kind, nn_index = ref_kind[nearest], ref_index[nearest]
    is_copy = ratio < 1 / 3
    own = is_copy & (nn_kind == group) & (nn_index == title) & (group != "held_out")
    out = Screening(captions=captions, group=group, title=title, images=gen.images, latents0=gen.latents0,
                    latents_at=gen.latents_at, keep_step=keep_step, wen_first=gen.wen_first, wen_mean=gen.wen_mean,
                    nn_ratio=ratio, nn_kind=nn_kind, nn_index=nn_index, is_copy=is_copy, own_copy=own,
                    seconds_per_image=seconds, steps=steps, guidance=guidance)
    return {f.name: _store(getattr(out, f.name)) for f in fields(Screening)}


def _store(v):
    """A field as ``torch.load(weights_only=True)`` reads it back: numpy arrays as tensors or string lists."""
    if isinstance(v, np.ndarray):
        return {"str": v.tolist()} if v.dtype.kind == "U" else {"np": torch.from_numpy(np.ascontiguousarray(v))}
    return v


def _restore(v):
    """The inverse of :func:`_store`."""
    if isinstance(v, dict) and "np" in v:
        return v["np"].numpy()
    if isinstance(v, dict) and "str" in v:
        return np.asarray(v["str"])
    return v


@dataclass
class Scores:
    """Scores of every generation of a :class:`Screening` (Chapter 13), higher = "memorized".

    ``std``: the paper's detector (one U-Net pass on the re-noised image, empty prompt); ``wen_first`` and
    ``wen_mean``: Wen et al.'s score at the first step and over all steps. ``sec_*``: seconds per image of
    each (the all-steps score costs a whole generation).
    """

    std: np.ndarray
    wen_first: np.ndarray
    wen_mean: np.ndarray
    sec_std: float
    sec_wen_first: float
    sec_wen_mean: float


def score_generations(pipe, scr: Screening, *, t: int = 10, site: str = detection.DETECTION_SITE,
                      seed: int = 0) -> Scores:
    """The paper's detector (authors' setting: ``t = 10``, empty prompt, ``site``, max pooling, Std) and Wen
    et al.'s scores (recorded while generating; the first-step score timed again on its own)."""
    std, sec = detection.detector_scores(pipe, scr.images, site=site, t=t, pooling="max", score="std", seed=seed,
                                         value_range=(-1, 1))
    _, sec_wen = detection.wen_scores(pipe, scr.captions[:50], steps=scr.steps)
    return Scores(std=std, wen_first=scr.wen_first, wen_mean=scr.wen_mean, sec_std=sec, sec_wen_first=sec_wen,
                  sec_wen_mean=scr.seconds_per_image)


@dataclass
class Comparison:
    """AUROC and TPR at 1 % FPR of "positives score higher", with 95 % bootstrap intervals (Chapter 13)."""

    auroc: float
    auroc_lo: float
    auroc_hi: float
    tpr: float
    tpr_lo: float
    tpr_hi: float
    n_pos: int
    n_neg: int


def compare(pos: np.ndarray, neg: np.ndarray, *, n_bootstrap: int = 1000, seed: int = 0) -> Comparison:
    """:func:`repdiff.metrics.detection_metrics` of scores ``pos (P,)`` against ``neg (Q,)`` as a dataclass
    (with ``n_bootstrap=0`` the interval bounds are NaN: no interval was computed)."""
    r = metrics.detection_metrics(pos, neg, n_bootstrap=n_bootstrap, seed=seed)
    nan = float("nan")
    return Comparison(auroc=r["auroc"], auroc_lo=r.get("auroc_lo", nan), auroc_hi=r.get("auroc_hi", nan),
                      tpr=r["tpr_at_1pct_fpr"], tpr_lo=r.get("tpr_lo", nan), tpr_hi=r.get("tpr_hi", nan),
                      n_pos=len(pos), n_neg=len(neg))


@dataclass
class LabelSummary:
    """How many generations of each group are copies (Chapters 12-13): counts and shares."""

    n_planted: int
    n_titles: int
    copies: int
    copy_share: float
    other_copies: int
    n_control: int
    control_copies: int
    control_share: float
    n_held_out: int
    held_out_copies: int
    held_out_share: float
    titles_copied: int


def label_summary(scr: Screening) -> LabelSummary:
    """Counts of :class:`Screening` labels: own-poster copies among the planted-title generations (and copies
    of some other training image), own-poster copies among the control generations, copies of anything among
    the held-out generations; ``titles_copied`` planted titles with at least one copy."""
    pl, ctl, held = scr.mask("planted"), scr.mask("control"), scr.mask("held_out")
    own = scr.own_copy
    return LabelSummary(
        n_planted=int(pl.sum()), n_titles=len(set(scr.title[pl].tolist())), copies=int((own & pl).sum()),
        copy_share=float((own & pl).sum() / max(1, pl.sum())), other_copies=int((scr.is_copy & ~own & pl).sum()),
        n_control=int(ctl.sum()), control_copies=int((own & ctl).sum()),
        control_share=float((own & ctl).sum() / max(1, ctl.sum())), n_held_out=int(held.sum()),
        held_out_copies=int((scr.is_copy & held).sum()),
        held_out_share=float((scr.is_copy & held).sum() / max(1, held.sum())),
        titles_copied=len(set(scr.title[own & pl].tolist())))


def layer_sweep(pipe, images: torch.Tensor, pos: np.ndarray, neg: np.ndarray, sites: list[str], ts: list[int], *,
                poolings: tuple[str, ...] = ("max", "mean"), seed: int = 0) -> dict[tuple[str, int, str], float]:
    """AUROC of the Std score, positives ``images[pos]`` against ``images[neg]``, for every site, timestep and
    pooling (Chapter 13): one U-Net pass per image and timestep reads all sites. ``{(site, t, pooling): AUROC}``."""
    keep = np.asarray(pos) | np.asarray(neg)
    z = pipeline.encode_images(pipe, images[torch.from_numpy(keep)], generator=torch.Generator().manual_seed(seed),
                                value_range=(-1, 1))
    p, n = np.asarray(pos)[keep], np.asarray(neg)[keep]
    out = {}
    for t in ts:
        reps = pipeline.features_at_t(pipe, z, sites, t=t, pooling=poolings, seed=seed + 1)
        for (site, pool), h in reps.items():
            s = detection.spikiness(h, "std")
            out[(site, t, pool)] = metrics.detection_metrics(s[p], s[n])["auroc"]
    return out


def words_split(tokenizer, prompts: list[str]) -> list[str]:
    """The distinct words of ``prompts`` that ``tokenizer`` splits into more than one token (Chapter 12: none
    for the shipped prompts, whose words make up the tiny SD's vocabulary)."""
    return sorted({w for p in prompts for w in p.split() if len(tokenizer.tokenize(w)) != 1})


def background_matches(images: torch.Tensor | np.ndarray, captions: list[str]) -> np.ndarray:
    """``(N,)`` booleans: is the median colour of each image's one-pixel border (``(N, 3, H, W)`` in [-1, 1]),
    among the compositional background colours, nearest to the one its caption names (Chapter 12)?"""
    names = list(captioned.BACKGROUND_COLORS)
    palette = np.array([scenes.COLORS[c] for c in names]) * 2 - 1
    nearest = ((scenes.border_color(images)[:, None] - palette[None]) ** 2).sum(-1).argmin(axis=1)
    named = [captioned.parse_compositional_caption(c)[5] for c in captions]
    return np.array([names[k] == bg for k, bg in zip(nearest, named, strict=True)])


def design_values(rows: list[dict], key: str) -> list:
    """The distinct values of the data-set setting ``key`` over the variants of ``design_study.jsonl``."""
    return sorted({row["recipe"]["dataset"][key] for row in rows})
