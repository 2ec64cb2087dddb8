"""Seeds derived from a run's seed, for draws that must be reproducible one by one (the data
order of each training epoch, each shard of generated samples) without replaying the others."""

# above any epoch or shard count, so distinct (seed, index) pairs give distinct seeds
SEED_STRIDE = 1_000_003


def derived_seed(seed: int, index: int) -> int:
    """The seed of item ``index`` (an epoch, a sample shard) of a run seeded with ``seed``."""
    return seed * SEED_STRIDE + index
