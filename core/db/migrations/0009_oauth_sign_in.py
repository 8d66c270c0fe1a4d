from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from salesinbox.core.db.models import OAuthSignInStatus
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    """oauth_sign_in: the "Sign in with …" consents users start (state, PKCE verifier encrypted, outcome)."""

    dependencies = [('salesinbox', '0008_oauth_grant')]

    initial = False

    operations = [
        ops.CreateModel(
            name='OAuthSignIn',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('salesinbox.User', source_field='user_id', db_constraint=True, to_field='id', related_name='oauth_sign_ins', on_delete=OnDelete.CASCADE)),
                ('provider', fields.CharField(max_length=64)),
                ('state', fields.CharField(unique=True, max_length=128)),
                ('code_verifier', fields.TextField(unique=False)),
                ('request', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('target_account_id', fields.IntField(null=True)),
                ('account_id', fields.IntField(null=True)),
                ('status', fields.CharEnumField(default=OAuthSignInStatus.PENDING, description='PENDING: PENDING\nCONNECTED: CONNECTED\nFAILED: FAILED', enum_type=OAuthSignInStatus, max_length=16)),
                ('error_code', fields.CharField(null=True, max_length=64)),
                ('error_message', fields.TextField(null=True, unique=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'oauth_sign_in', 'app': 'salesinbox', 'pk_attr': 'id', 'table_description': 'One "Sign in with Google/Microsoft" consent a user started (core/oauth/oauth_sign_in.py).'},
            bases=['Model'],
        ),
    ]
