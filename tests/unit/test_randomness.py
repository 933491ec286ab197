"""Pooled kernel randomness: the numbers random.SystemRandom gives, with fewer system calls."""

from __future__ import annotations

import os

import pytest

from resolver.upstream.randomness import PooledSystemRandom


def test_pooled_random_numbers_stay_in_their_ranges() -> None:
    """Ids, bits and floats keep the bounds random.Random promises."""
    rng = PooledSystemRandom()
    ids = [rng.randrange(0x10000) for _ in range(20_000)]
    assert min(ids) >= 0 and max(ids) < 0x10000
    assert all(0 <= rng.getrandbits(k) < (1 << k) for k in (1, 7, 8, 9, 16, 17, 64, 100))
    floats = [rng.random() for _ in range(1000)]
    assert all(0.0 <= f < 1.0 for f in floats)
    assert rng.getrandbits(0) == 0 and len(rng.randbytes(10_000)) == 10_000


def test_pooled_random_ids_are_spread_over_the_whole_id_space() -> None:
    """20,000 ids out of 65,536: a uniform source repeats few and fills both halves."""
    rng = PooledSystemRandom()
    ids = [rng.randrange(0x10000) for _ in range(20_000)]
    assert len(set(ids)) > 16_500  # expected about 17,400 for a uniform source
    high = sum(1 for i in ids if i >= 0x8000)
    assert 9_000 < high < 11_000


def test_pooled_random_refuses_to_save_or_restore_state() -> None:
    """There is no state to replay: the kernel is the source."""
    rng = PooledSystemRandom()
    rng.seed(42)  # ignored, as by SystemRandom
    with pytest.raises(NotImplementedError):
        rng.getstate()
    with pytest.raises(NotImplementedError):
        rng.setstate(None)


def test_pooled_random_child_after_fork_never_replays_the_parents_pool() -> None:
    """A forked worker draws fresh octets: the parent's pool is dropped in the child."""
    rng = PooledSystemRandom()
    rng.getrandbits(8)  # the pool is full now
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next 64 bits and leave at once
        try:
            os.write(write_end, rng.getrandbits(64).to_bytes(8, "big"))
        finally:
            os._exit(0)
    os.close(write_end)
    child = int.from_bytes(os.read(read_end, 8), "big")
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child != rng.getrandbits(64)  # equal only if the pool had been copied
