"""Seeds derived from a run's seed, for draws that must be reproducible one by one (the data
order of each training epoch, each shard or batch of generated samples) without replaying the
others."""

# above any epoch or shard count, so distinct (seed, index) pairs give distinct seeds
SEED_STRIDE = 1_000_003
SEED_RANGE = 2**64  # torch.Generator.manual_seed takes seeds in [0, 2^64)


def derived_seed(seed: int, index: int) -> int:
    """The seed of item ``index`` (an epoch, a sample shard) of a run seeded with ``seed``."""
    return (seed * SEED_STRIDE + index) % SEED_RANGE


def batch_seed(seed: int, batch: int) -> int:
    """The seed of batch ``batch`` of a sample set drawn with ``seed``: ``seed`` itself for
    batch 0 (one batch is drawn as from a generator seeded with ``seed``), else
    :func:`derived_seed`, so each batch can be drawn alone (resumed, or on another rank)."""
    return seed if batch == 0 else derived_seed(seed, batch)
