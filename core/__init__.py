"""SalesInbox core: models, sync, sharing policy, mail transport and the plugin host.

Provider plugins import only what this module exports: the ``hookimpl`` marker and the
value types they return.
"""

from .plugin_host.hookspecs import hookimpl
from .plugin_host.providers import (
    AuthFailureContext,
    AuthKind,
    FolderRole,
    LoginMechanism,
    LoginPlan,
    OAuthMechanism,
    OAuthServer,
    ProviderEndpoints,
    ProviderOption,
    ProviderSpec,
    Security,
    ServerEndpoint,
    UsernameFormat,
)

__all__ = [
    "AuthFailureContext",
    "AuthKind",
    "FolderRole",
    "LoginMechanism",
    "LoginPlan",
    "OAuthMechanism",
    "OAuthServer",
    "ProviderEndpoints",
    "ProviderOption",
    "ProviderSpec",
    "Security",
    "ServerEndpoint",
    "UsernameFormat",
    "hookimpl",
]
