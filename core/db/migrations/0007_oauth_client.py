from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    """oauth_client: the organisation's OAuth client per provider, set by an admin."""

    dependencies = [('salesinbox', '0006_folder_counts_from_store')]

    initial = False

    operations = [
        ops.CreateModel(
            name='OAuthClient',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organisation', fields.ForeignKeyField('salesinbox.Organisation', source_field='organisation_id', db_constraint=True, to_field='id', related_name='oauth_clients', on_delete=OnDelete.CASCADE)),
                ('provider', fields.CharField(max_length=64)),
                ('client_id', fields.CharField(max_length=500)),
                ('client_secret', fields.TextField(unique=False)),
                ('authorization_url', fields.CharField(null=True, max_length=2000)),
                ('token_url', fields.CharField(null=True, max_length=2000)),
                ('revocation_url', fields.CharField(null=True, max_length=2000)),
                ('userinfo_url', fields.CharField(null=True, max_length=2000)),
                ('tenant', fields.CharField(null=True, max_length=128)),
                ('frontend_redirect_url', fields.CharField(null=True, max_length=2000)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'oauth_client', 'app': 'salesinbox', 'unique_together': (('organisation', 'provider'),), 'pk_attr': 'id', 'table_description': "The organisation's OAuth client at one provider's authorisation server, set by an admin."},
            bases=['Model'],
        ),
    ]
