"""The router: every address that enters the server is resolved here, and only here.

Pure and synchronous except for directory reads; what it needs from DNS or Minger is
looked up by the caller.  It never imports a listener.
"""

from .resolve import MAX_EXPANSION, Router
from .route import LOCAL_TARGET, Context, Resolution, Route

__all__ = ["Context", "LOCAL_TARGET", "MAX_EXPANSION", "Resolution", "Route", "Router"]
