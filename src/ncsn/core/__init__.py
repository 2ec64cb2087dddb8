"""The functional core: noise schedules, score-matching losses, Langevin samplers, analytic toys.

Everything here meets at one contract, the *score function*::

    score(x: Tensor (B, ...), sigma: Tensor (B,)) -> Tensor shaped like x

the estimate of grad_x log p_sigma(x), the score of the data perturbed with N(0, sigma^2 I).
Networks, analytic distributions (:class:`ncsn.core.toy.GaussianMixture`) and plain lambdas all
fit it. The core imports only torch: no files, configs, networks or printing.
"""

from collections.abc import Callable

from torch import Tensor

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``score(x, sigma) -> grad_x log p_sigma(x)``; ``x`` is (B, ...), ``sigma`` is (B,)."""
