"""HTTP front door for sparseretr (FastAPI). HTTP only: retrieval lives in ``sparseretr``."""

from sparseretr.service.app import create_app
from sparseretr.service.server import serve
from sparseretr.service.settings import Settings

__all__ = ["Settings", "create_app", "serve"]
