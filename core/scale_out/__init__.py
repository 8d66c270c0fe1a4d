"""Scale-out on PostgreSQL: ``salesinbox worker`` processes run syncs and IDLE watching as
jobs of procrastinate (a PostgreSQL-native job engine), fenced by a per-account advisory
lock so that one account is never synced by two workers at once; API processes hand sync
requests to the workers through the engine; mail events, token revocations and user changes
cross processes over PostgreSQL LISTEN/NOTIFY. Nothing here runs on the embedded SQLite
default, where :mod:`..sync.scheduler` runs syncs in the server process.

May import: every core subpackage (it sits on top of them all); nothing in the core imports it.
"""
