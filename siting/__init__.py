"""siting: where on a grid can 5–20 MW AI-inference micro data centers connect?"""

from siting.errors import GridError, SitingError, UsageError
from siting.sources.grid import Grid, load_grid

__all__ = ["Grid", "GridError", "SitingError", "UsageError", "load_grid"]
__version__ = "0.1.0"
