"""Mail sync: reading folders over IMAP, storing messages (the only writer of mail rows),
the per-account sync engine, the scheduler and IDLE watcher that run it, the audit that
repairs what a sync missed, two-way flags, and the events that feed subscriptions.

May import: everything of the core below it (shared modules, :mod:`..db`, :mod:`..crm`,
:mod:`..plugin_host`, :mod:`..transport`, :mod:`..parsing`, :mod:`..mail_accounts`,
:mod:`..oauth`, :mod:`..observability`) and :mod:`..sending.sent_copy` (the engine replaces
placeholder Sent copies).
"""
