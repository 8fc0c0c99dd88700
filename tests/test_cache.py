"""repdiff.sd.cache: results kept on disk, keyed by the pipeline, the arguments and the code (Chapters 12-14, A3)."""

import contextlib
import threading

import pytest
import torch
from diffusers import DDPMScheduler

from repdiff.sd import cache, pipeline, steering


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REPDIFF_CACHE", str(tmp_path))
    return tmp_path / "sd"


def test_digest_tells_apart_what_a_result_depends_on():
    x = torch.zeros(2000)
    y = x.clone()
    y[1000] = 1.0
    # negative control: torch's repr elides the middle of a long tensor, so a digest of repr(x) would collide
    assert repr(x) == repr(y)
    assert cache.digest(x) != cache.digest(y)
    assert cache.digest(x) == cache.digest(x.clone())  # by value, not by object
    assert cache.digest(x.float()) != cache.digest(x.double())  # equal values, another dtype
    assert cache.digest(torch.zeros(2, 3)) != cache.digest(torch.zeros(3, 2))
    assert cache.digest([[1, 2], [3]]) != cache.digest([[1], [2, 3]])
    assert cache.digest({"a": 1, "b": 2}) == cache.digest({"b": 2, "a": 1})
    assert cache.digest(1) != cache.digest(1.0) and cache.digest("1") != cache.digest(1)


def test_fingerprint_changes_with_a_weight_or_the_scheduler(pipe):
    before = cache.fingerprint(pipe)
    assert cache.fingerprint(pipe) == before
    w = pipe.unet.conv_out.weight
    with torch.no_grad():
        w[0, 0, 0, 0] += 1e-3
    try:
        assert cache.fingerprint(pipe) != before, "one changed U-Net weight must change the fingerprint"
    finally:
        with torch.no_grad():
            w[0, 0, 0, 0] -= 1e-3
    assert cache.fingerprint(pipe) == before
    ddim = pipe.scheduler
    try:
        pipe.scheduler = DDPMScheduler.from_config(ddim.config)
        assert cache.fingerprint(pipe) != before, "another scheduler samples other images"
    finally:
        pipe.scheduler = ddim


def test_cached_computes_once_per_key(fresh_cache, monkeypatch):
    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.arange(3.0), "names": ["a", "b"]}

    first = cache.cached("demo", ["key", torch.ones(2)], compute)
    again = cache.cached("demo", ["key", torch.ones(2)], compute)
    assert len(calls) == 1 and again["names"] == ["a", "b"] and torch.equal(again["x"], first["x"])
    assert len(list(fresh_cache.glob("demo_*.pt"))) == 1
    cache.cached("demo", ["key", torch.ones(2) * 2], compute)  # another argument: computed
    assert len(calls) == 2
    monkeypatch.setattr(cache, "_code_digest", lambda: "other code")
    cache.cached("demo", ["key", torch.ones(2)], compute)  # other code: an old entry is not read
    assert len(calls) == 3
    n_files = len(list(fresh_cache.glob("demo_*.pt")))
    cache.cached("demo", ["key", torch.ones(2)], compute, use=False)  # neither read nor written
    assert len(calls) == 4 and len(list(fresh_cache.glob("demo_*.pt"))) == n_files


def test_lock_makes_a_second_holder_wait(tmp_path):
    """Two processes (here: threads with their own file handles) sharing $REPDIFF_CACHE compute an entry once:
    while one holds an entry's lock, another waits. Negative control: a no-op lock lets the second one in at once."""
    target = tmp_path / "entry.pt"

    def second_holder_waits(lock) -> bool:
        """Hold ``lock`` while a second thread asks for it; True if the second got in only after the release."""
        entered = threading.Event()

        def second():
            with lock(target):
                entered.set()

        with lock(target):
            thread = threading.Thread(target=second)
            thread.start()
            # a working lock keeps the second out however long we wait; a broken one lets it in at once (the
            # wait ends as soon as it does, so a busy machine only makes this slower, never wrong)
            waited = not entered.wait(0.5 if lock is cache.lock else 60)
        thread.join(60)
        assert entered.is_set(), "the second holder never got the lock after the first released it"
        return waited

    assert second_holder_waits(cache.lock)
    assert not second_holder_waits(lambda _file: contextlib.nullcontext())


def test_sweep_is_read_back_only_for_the_same_arguments(pipe, fresh_cache, monkeypatch):
    """A second sweep with the same arguments (A3's student notebook after its solutions) generates nothing
    and returns the same samples; another strength or another concept vector is generated."""
    prompts = ["the quiet harbor by tumiti", "the hidden orchard by kalomir"]
    kept = pipeline.generate(pipe, prompts, steps=4, seed=1, keep_step=1).latents_at
    site = "up_blocks.1.resnets.0"
    v = {site: torch.randn(pipe.unet.up_blocks[1].resnets[0].out_channels, generator=torch.Generator().manual_seed(0))}
    args = dict(from_step=1, window=(2, 4), steps=4)
    real, calls = steering.generate, []

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(steering, "generate", counted)
    first = steering.sweep(pipe, v, [0.0, 3.0], prompts, kept, **args)
    assert len(calls) == 2  # one generation per strength
    again = steering.sweep(pipe, v, [0.0, 3.0], prompts, kept, **args)
    assert len(calls) == 2, "generated although the same sweep is cached"
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert (first[1] - first[0]).abs().max() > 1e-4, "the strength must change the samples for this test to mean much"
    # negative controls: a key that left out the strengths, the vectors or the starting latents would read these
    for changed in ({"a_values": [0.0, 2.0]}, {"vectors": {site: -v[site]}}, {"latents_at": kept.flip(0)}):
        call = {"vectors": v, "a_values": [0.0, 3.0], "latents_at": kept, **changed}
        n = len(calls)
        steering.sweep(pipe, call["vectors"], call["a_values"], prompts, call["latents_at"], **args)
        assert len(calls) == n + 2, f"{sorted(changed)} changed, yet the cached sweep was read"
