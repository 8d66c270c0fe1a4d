"""Mail accounts: connecting one (servers verified before anything is saved), its stored
logins, updating credentials, and its From addresses.

May import: the shared modules, :mod:`..db`, :mod:`..crm`, :mod:`..plugin_host` and
:mod:`..transport` (to verify the servers); :mod:`..oauth` only for type checking.
"""
