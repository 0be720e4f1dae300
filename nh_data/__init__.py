"""nh_data: the standalone, Numba-accelerated data engine of Neural Hamilton.

Never imports torch.
"""

from .errors import NHError
from .integrators import METHODS, get_method, integrate, integrate_batch

__all__ = ["NHError", "METHODS", "get_method", "integrate", "integrate_batch"]
