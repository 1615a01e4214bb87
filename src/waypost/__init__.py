"""Waypost: a multi-domain mail server with a CommuniGate Pro-style router.

Packages, from the listeners down (dependencies point down only):
``cli``/``smtp`` → ``queue`` → ``router``/``mailstore``/``directory``/``delivery`` →
``db`` → ``config``.  See the administrator's guide in ``docs/``.
"""

__version__ = "0.1.0"
