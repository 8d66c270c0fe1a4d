from tortoise import migrations
from tortoise.migrations import operations as ops
from salesinbox.core.db.models import AddressRole
from tortoise import fields

class Migration(migrations.Migration):
    """message_address.role: REPLY_TO, the Reply-To addresses (stored from now on; mail stored
    before has none, and replies to it go to From as before)."""

    dependencies = [('salesinbox', '0011_threads_dates_sender')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='MessageAddress',
            name='role',
            field=fields.CharEnumField(description='FROM: FROM\nTO: TO\nCC: CC\nBCC: BCC\nSENDER: SENDER\nREPLY_TO: REPLY_TO', enum_type=AddressRole, max_length=8),
        ),
    ]
