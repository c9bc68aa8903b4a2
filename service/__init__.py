"""HTTP front door for sparseretr (FastAPI). HTTP only: retrieval lives in ``sparseretr``."""

from service.app import create_app
from service.server import serve
from service.settings import Settings

__all__ = ["Settings", "create_app", "serve"]
