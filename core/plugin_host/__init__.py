"""The plugin host: the hookspecs provider plugins implement, the value types they return,
the pluggy manager that loads them, the core's default hook answers, and the registry the
rest of the core asks ("which provider serves example.com? which login does it use?").

May import: the shared modules at the top of ``salesinbox.core`` (errors, settings,
address_normalisation) and :mod:`..oauth.oauth_urls` (the URL rules the registry applies to
declared OAuth endpoints). ``providers`` and ``hookspecs`` import nothing else of the core:
they are what plugins see through ``salesinbox.core``.
"""
