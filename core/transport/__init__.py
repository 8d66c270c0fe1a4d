"""Mail transport: talking to IMAP and SMTP servers, synchronously (callers use worker
threads). The SSRF guard, TLS contexts, the IMAP and SMTP clients, and what both share: a
server's login and the connect policy, SASL messages and secret scrubbing, the typed
:class:`~.server_errors.MailServerError` and chunked sending.

May import: the shared modules at the top of ``salesinbox.core`` and the value types of
:mod:`..plugin_host.providers`. No database, no ORM.
"""
