from tortoise import migrations
from tortoise.migrations import operations as ops

class Migration(migrations.Migration):
    dependencies = [('salesinbox', '0001_initial')]

    initial = False

    operations = [
        ops.AlterModelOptions(
            name='MessageBody',
            options={'table': 'message_body', 'app': 'salesinbox', 'pk_attr': 'message_id', 'table_description': 'The bodies of a message, apart so that list queries never read them.'},
        ),
    ]
