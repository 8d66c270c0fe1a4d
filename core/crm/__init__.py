"""CRM records and the people who use them: the organisation, users, API tokens, leads and
contacts, and the links between messages and those records.

May import: the shared modules at the top of ``salesinbox.core`` and :mod:`..db`.
"""
