"""The FTP listener (seed 001: FTP clients log in like POP/IMAP clients) on the account
file areas of ``waypost.files``, with explicit FTPS (``AUTH TLS``).  It never touches a
file of an area itself: every operation goes through ``AccountFiles``."""

from .server import FTPLimits, FTPService, load_tls

__all__ = ["FTPLimits", "FTPService", "load_tls"]
