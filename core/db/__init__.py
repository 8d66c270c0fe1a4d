"""The database: the Tortoise models, their migrations, opening the database, and the SQL
helpers Tortoise lacks (correlated sub-queries, cancel-safe SQLite transactions, writes a
cancellation cannot cut in half).

May import: the shared modules at the top of ``salesinbox.core`` and the enums of
:mod:`..plugin_host.providers` (stored in model fields). Nothing here knows about mail
servers, GraphQL or plugins.
"""
