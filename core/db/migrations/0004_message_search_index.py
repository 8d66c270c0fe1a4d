import logging

from tortoise import migrations
from tortoise.migrations import operations as ops

log = logging.getLogger("salesinbox.db")

# The SalesInbox search (core/sharing/views.py) filters with Tortoise's icontains, which PostgreSQL
# receives as UPPER(CAST(col AS VARCHAR)) LIKE UPPER($n): a trigram index on exactly those
# expressions answers it without reading every message of the user (bench/bench_views.py,
# 1M messages: a rare term 280 ms -> 25 ms, no match 310 ms -> 1 ms; common terms unchanged,
# the planner keeps reading the date index). SQLite has no such index: it scans, as before.
_INDEX = (
    'CREATE INDEX IF NOT EXISTS "message_search_trgm_idx" ON "message" USING gin ('
    '(upper(CAST("subject" AS VARCHAR)))      gin_trgm_ops, '
    '(upper(CAST("from_name" AS VARCHAR)))    gin_trgm_ops, '
    '(upper(CAST("from_address" AS VARCHAR))) gin_trgm_ops)'
)


async def add_search_index(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect != "postgres":
        return
    # pg_trgm ships with PostgreSQL and is a trusted extension (13+): a role with CREATE on
    # the database may install it. Without that right the index is skipped, not the migration:
    # search still works, only slower. A savepoint keeps the migration's transaction usable.
    await client.execute_script("SAVEPOINT salesinbox_trgm")
    try:
        await client.execute_script("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as error:  # noqa: BLE001 - any refusal means "no index", said in the log
        await client.execute_script("ROLLBACK TO SAVEPOINT salesinbox_trgm")
        log.warning(
            "Could not install the PostgreSQL extension pg_trgm (%s): the SalesInbox search works "
            "but reads every message of the user. To speed it up, run as a superuser in this "
            "database: CREATE EXTENSION pg_trgm; then restart the server.", error,
        )
        return
    await client.execute_script("RELEASE SAVEPOINT salesinbox_trgm")
    await client.execute_script(_INDEX)


async def drop_search_index(apps, schema_editor) -> None:
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor.client.execute_script('DROP INDEX IF EXISTS "message_search_trgm_idx"')


class Migration(migrations.Migration):
    """PostgreSQL: a trigram index for the SalesInbox's text search (nothing on SQLite)."""

    dependencies = [('salesinbox', '0003_message_link_date')]

    initial = False
    atomic = True

    operations = [
        ops.RunPython(add_search_index, drop_search_index),
    ]
