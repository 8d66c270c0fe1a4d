from tortoise import migrations
from tortoise.migrations import operations as ops

# From this version on, folder.messages_synced is the store's own count, kept in the same
# transactions as the message rows (core/sync/store.py). Earlier versions computed it in memory
# and could show a folder as complete while rows were missing (an interrupted re-sync after
# a UIDVALIDITY change). Recount every folder from its rows, and send any folder that holds
# fewer messages than the server had back through its initial sync, which fetches what is
# missing.
_RECOUNT = """UPDATE "folder" SET "messages_synced" = (
    SELECT COUNT(*) FROM "message"
    WHERE "message"."account_id" = "folder"."account_id"
      AND "message"."folder_id" = "folder"."id"
      AND "message"."uidvalidity" = "folder"."uidvalidity")"""
_REOPEN = """UPDATE "folder" SET "initial_sync_done" = FALSE
    WHERE "initial_sync_done" AND "messages_synced" < "messages_total\""""


class Migration(migrations.Migration):
    """Recount folders from their stored messages; reopen those missing mail."""

    dependencies = [('salesinbox', '0005_message_search_fts')]

    initial = False
    atomic = True

    operations = [
        ops.RunSQL(_RECOUNT, reverse_sql=""),
        ops.RunSQL(_REOPEN, reverse_sql=""),
    ]
