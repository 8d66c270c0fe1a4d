import logging

from tortoise import migrations
from tortoise.migrations import operations as ops

log = logging.getLogger("salesinbox.db")

# SQLite: the SalesInbox search (core/sharing/views.py:text_search) reads an FTS5 index with the
# trigram tokenizer, which answers "contains this text, any case" for 3 characters or more
# without scanning the user's mail (bench/bench_views.py: a rare term at 100,000 messages
# took 356 ms). External content: the index holds no copy of the text, triggers keep it in
# step with "message". PostgreSQL has its trigram index from migration 0004.
_STATEMENTS = [
    """CREATE VIRTUAL TABLE "message_search" USING fts5(
           subject, from_name, from_address, content='message', content_rowid='id', tokenize='trigram')""",
    """CREATE TRIGGER "message_search_insert" AFTER INSERT ON "message" BEGIN
           INSERT INTO message_search(rowid, subject, from_name, from_address)
           VALUES (new.id, new.subject, new.from_name, new.from_address);
       END""",
    """CREATE TRIGGER "message_search_delete" AFTER DELETE ON "message" BEGIN
           INSERT INTO message_search(message_search, rowid, subject, from_name, from_address)
           VALUES ('delete', old.id, old.subject, old.from_name, old.from_address);
       END""",
    """CREATE TRIGGER "message_search_update" AFTER UPDATE OF subject, from_name, from_address ON "message" BEGIN
           INSERT INTO message_search(message_search, rowid, subject, from_name, from_address)
           VALUES ('delete', old.id, old.subject, old.from_name, old.from_address);
           INSERT INTO message_search(rowid, subject, from_name, from_address)
           VALUES (new.id, new.subject, new.from_name, new.from_address);
       END""",
    """INSERT INTO message_search(message_search) VALUES ('rebuild')""",
]


async def add_search_index(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect != "sqlite":
        return
    # FTS5's trigram tokenizer needs SQLite 3.34 (2020): without it the search scans, as before.
    # One statement at a time (execute_script would COMMIT the migration's transaction first).
    await client.execute_query("SAVEPOINT salesinbox_fts")
    try:
        for statement in _STATEMENTS:
            await client.execute_query(statement)
    except Exception as error:  # noqa: BLE001 - no FTS5/trigram in this SQLite: no index, said in the log
        await client.execute_query("ROLLBACK TO SAVEPOINT salesinbox_fts")
        await client.execute_query("RELEASE SAVEPOINT salesinbox_fts")
        log.warning("SQLite without FTS5 trigram support (%s): the SalesInbox search scans the "
                    "user's mail. SQLite 3.34 or newer with FTS5 makes it fast.", error)
        return
    await client.execute_query("RELEASE SAVEPOINT salesinbox_fts")


async def drop_search_index(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "sqlite":
        for name in ("message_search_insert", "message_search_delete", "message_search_update"):
            await client.execute_query(f'DROP TRIGGER IF EXISTS "{name}"')
        await client.execute_query('DROP TABLE IF EXISTS "message_search"')


class Migration(migrations.Migration):
    """SQLite: an FTS5 trigram index for the SalesInbox's text search (nothing on PostgreSQL)."""

    dependencies = [('salesinbox', '0004_message_search_index')]

    initial = False
    atomic = True

    operations = [
        ops.RunPython(add_search_index, drop_search_index),
    ]
