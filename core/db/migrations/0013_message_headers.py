from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    """message_body.headers: every header of a message as received (kept from now on)."""

    dependencies = [('salesinbox', '0012_reply_to_role')]

    initial = False

    operations = [
        ops.AddField(
            model_name='MessageBody',
            name='headers',
            field=fields.TextField(default='', unique=False),
        ),
    ]
