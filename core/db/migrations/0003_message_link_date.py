from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    """message_link.date: the related list reads a record's newest mail from an index."""

    dependencies = [('salesinbox', '0002_message_body_primary_key')]

    initial = False

    operations = [
        ops.RemoveIndex(
            model_name='MessageLink',
            name='message_link_record_idx',
            fields=None,
        ),
        ops.AddField(
            model_name='MessageLink',
            name='date',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        # Existing links take their message's date (it never changes once stored).
        ops.RunSQL(
            'UPDATE "message_link" SET "date" = '
            '(SELECT m."date" FROM "message" m WHERE m."id" = "message_link"."message_id")',
            reverse_sql='UPDATE "message_link" SET "date" = NULL',
        ),
        ops.AddIndex(
            model_name='MessageLink',
            index=Index(fields=['record_id', 'date', 'message_id'], name='message_link_record_date_idx'),
        ),
    ]
