"""OAuth2 for mail accounts: the organisation's OAuth clients, the rules for their URLs, the
consent flow ("Sign in with Google/Microsoft") and grants whose access tokens refresh
themselves.

May import: the shared modules, :mod:`..db`, :mod:`..crm`, :mod:`..plugin_host`,
:mod:`..mail_accounts`, :mod:`..transport` and :mod:`..observability` (metrics).
"""
