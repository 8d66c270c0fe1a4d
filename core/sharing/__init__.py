"""Who may see which mail, and the lists built on that: the sharing settings (account
permission, Share Email, excluded domains), the visibility rule (one SQL filter over
messages), the mail views and a record's threads.

May import: the shared modules, :mod:`..db`, :mod:`..crm` and :mod:`..mail_accounts`.
"""
