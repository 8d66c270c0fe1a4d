"""The ``salesinbox`` command line: run the server, migrate, create the first admin, issue
tokens, sync or audit an account, check installed provider plugins.

It sits on top of the other packages: it may import ``salesinbox.core`` and
``salesinbox.schema`` (to run the ASGI app); nothing imports it.
"""

from .commands import main

__all__ = ["main"]
