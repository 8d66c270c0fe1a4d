"""Sending mail from the CRM: composing and sending (new messages and replies), building the
MIME message and handing it to SMTP, and the Sent copy on the server and in the store.

May import: the shared modules, :mod:`..db`, :mod:`..crm`, :mod:`..plugin_host`,
:mod:`..transport`, :mod:`..parsing`, :mod:`..oauth`, :mod:`..sharing.visibility` (one may
reply only to mail one can see), :mod:`..sync.store` (the Sent copy is stored at once) and
:mod:`..sync.message_flags` (a reply sets \\Answered on the original).
"""
