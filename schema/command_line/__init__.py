"""The ``salesinbox`` command line: run the server, migrate, create the first admin, issue
tokens, sync or audit an account, check installed provider plugins.

It lives in ``salesinbox.schema`` beside the HTTP and GraphQL interfaces because it is one
more way in from outside, and it runs the ASGI app; it may import ``salesinbox.core`` and
the rest of ``salesinbox.schema``, and nothing imports it.
"""

from .commands import main

__all__ = ["main"]
