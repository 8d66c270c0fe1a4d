from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    """oauth_sign_in: the single-use link that binds a sign-in to the browser opening it."""

    dependencies = [('salesinbox', '0009_oauth_sign_in')]

    initial = False

    operations = [
        ops.AddField(
            model_name='OAuthSignIn',
            name='authorization_url',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name='OAuthSignIn',
            name='browser_binding',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name='OAuthSignIn',
            name='launch_ticket',
            field=fields.CharField(null=True, unique=True, max_length=64),
        ),
        ops.AddField(
            model_name='OAuthSignIn',
            name='launched_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
