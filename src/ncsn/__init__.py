"""ncsn: Noise Conditional Score Networks (Song & Ermon, 2019) and their follow-ups.

The functional core lives in :mod:`ncsn.core` (noise schedules, losses, samplers, analytic toy
distributions); networks, data, training, evaluation and the CLI are layers above it.
"""

__version__ = "0.1.0"
