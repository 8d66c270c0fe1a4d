from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    """oauth_grant: an account's OAuth2 tokens (encrypted), refreshed by core/oauth/oauth_tokens.py."""

    dependencies = [('salesinbox', '0007_oauth_client')]

    initial = False

    operations = [
        ops.CreateModel(
            name='OAuthGrant',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('account', fields.OneToOneField('salesinbox.MailAccount', source_field='account_id', db_constraint=True, to_field='id', related_name='oauth_grant', on_delete=OnDelete.CASCADE)),
                ('provider', fields.CharField(max_length=64)),
                ('refresh_token', fields.TextField(null=True, unique=False)),
                ('access_token', fields.TextField(unique=False)),
                ('access_token_expires_at', fields.DatetimeField(null=True, description='when the access token expires (None: the provider did not say)', auto_now=False, auto_now_add=False)),
                ('access_token_issued_at', fields.DatetimeField(description='when the access token was issued: with the expiry, its lifetime (for the refresh margin)', auto_now=False, auto_now_add=False)),
                ('scopes', fields.TextField(default='', unique=False)),
                ('serial', fields.IntField(default=0)),
                ('invalid_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'oauth_grant', 'app': 'salesinbox', 'pk_attr': 'id', 'table_description': 'An account\'s OAuth2 grant ("Sign in with Google/Microsoft"): the tokens that log it in.'},
            bases=['Model'],
        ),
    ]
