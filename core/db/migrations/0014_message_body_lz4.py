import logging

from tortoise import migrations
from tortoise.migrations import operations as ops

log = logging.getLogger("salesinbox.db")

# PostgreSQL: the bodies (text, HTML, headers) are compressed with lz4 rather than pglz when
# TOASTed: storing them takes less than half the time (bench/README.md: 3.7 s -> 1.5 s for
# the bodies of 20,000 messages). Rows written before keep pglz (both are read alike).
# Needs PostgreSQL 14 built with lz4; without it the columns stay as they were. Nothing on SQLite.
_COLUMNS = ("text", "html", "headers")


async def compress_with_lz4(apps, schema_editor) -> None:
    await _set_compression(schema_editor.client, "lz4")


async def compress_with_default(apps, schema_editor) -> None:
    await _set_compression(schema_editor.client, "default")


async def _set_compression(client, method: str) -> None:
    if client.capabilities.dialect != "postgres":
        return
    # One statement at a time in a savepoint (execute_script would COMMIT the migration's
    # transaction first); a server without lz4 refuses it: then nothing changes.
    await client.execute_query("SAVEPOINT salesinbox_lz4")
    try:
        for column in _COLUMNS:
            await client.execute_query(
                f'ALTER TABLE "message_body" ALTER COLUMN "{column}" SET COMPRESSION {method}')
    except Exception as error:  # noqa: BLE001 - PostgreSQL < 14 or without lz4: pglz, as before
        await client.execute_query("ROLLBACK TO SAVEPOINT salesinbox_lz4")
        await client.execute_query("RELEASE SAVEPOINT salesinbox_lz4")
        log.warning("PostgreSQL without lz4 compression (%s): message bodies are compressed with "
                    "pglz, slower to store. PostgreSQL 14 or newer built with lz4 makes it faster.", error)
        return
    await client.execute_query("RELEASE SAVEPOINT salesinbox_lz4")


class Migration(migrations.Migration):
    """PostgreSQL: message bodies compressed with lz4 (nothing on SQLite)."""

    dependencies = [('salesinbox', '0013_message_headers')]

    initial = False
    atomic = True

    operations = [
        ops.RunPython(compress_with_lz4, compress_with_default),
    ]
