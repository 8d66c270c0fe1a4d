"""Real mail servers for integration tests: a private Dovecot (IMAP), an aiosmtpd
SMTP server, throw-away TLS certificates and realistic RFC 5322 messages.

The pytest fixtures live in `tests.servers.fixtures` (register it with
`pytest_plugins = ["tests.servers.fixtures"]` in tests/conftest.py).
"""
