"""How the Small-Dense baseline narrows a model: every layer width times sqrt(density), at least 1.

A dense model with all widths scaled this way has about `density` times the weights of the full one (a
layer's weights grow with the product of two widths). The registry models take a `density` argument and
narrow themselves with it, so the rule lives with them; `sparselearning.methods` offers the same function
to Python users who narrow their own models.
"""

from __future__ import annotations

import math

from sparselearning.errors import check_density


def small_dense_width(width: int, density: float) -> int:
    """Small-Dense: every layer width times sqrt(density), at least 1."""
    return max(1, round(width * math.sqrt(check_density(density))))
