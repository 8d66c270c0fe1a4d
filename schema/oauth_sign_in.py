"""“Sign in with …”: the mutation that starts a consent, the query that polls it, and the
page (or frontend redirect) the callback ``GET /oauth/callback`` answers with."""

from __future__ import annotations

import html
from datetime import datetime
from urllib.parse import urlencode

import strawberry
from starlette.responses import HTMLResponse, RedirectResponse, Response

from salesinbox.core.db.models import OAuthSignIn, OAuthSignInStatus, SharingPermission
from salesinbox.core.errors import SalesInboxError
from salesinbox.core.oauth import oauth_sign_in
from salesinbox.core.oauth.oauth_launch import Launch
from salesinbox.core.oauth.oauth_sign_in import SignInOutcome

from .accounts import ServerInput, SharingEnum
from .context import Info
from .ids import parse_id, to_id
from .providers import ProviderOptionValue

OAuthSignInStatusEnum = strawberry.enum(
    OAuthSignInStatus, name="OAuthSignInStatus",
    description="Where a sign-in stands: PENDING until the browser comes back from the provider.",
)


@strawberry.type(
    name="OAuthSignIn",
    description="A “Sign in with …” you started: poll it to learn how the consent ended.",
)
class OAuthSignInType:
    id: strawberry.ID
    provider: str
    status: OAuthSignInStatusEnum  # type: ignore[valid-type]
    error_code: str | None = strawberry.field(description="An error code (OAUTH_DENIED, WRONG_MAILBOX…) when FAILED.")
    error_message: str | None = strawberry.field(description="What went wrong and how to fix it, when FAILED.")
    account_id: strawberry.ID | None = strawberry.field(description="The account connected, when CONNECTED.")
    expires_at: datetime = strawberry.field(description="The consent must be finished by then.")

    @classmethod
    def from_model(cls, row: OAuthSignIn) -> OAuthSignInType:
        return cls(
            id=to_id(row.id), provider=row.provider, status=row.status, error_code=row.error_code,
            error_message=row.error_message,
            account_id=to_id(row.account_id) if row.account_id is not None else None,
            expires_at=row.expires_at,
        )


@strawberry.type(name="OAuthSignInStart", description="Open authorizationUrl in the user's browser at once.")
class OAuthSignInStartType:
    authorization_url: str = strawberry.field(description=(
        "This server's single-use link (/oauth/start) that binds the browser opening it to the "
        "sign-in and forwards it to the provider's consent page; the consent must be finished "
        "in that browser. Do not pass it on: whoever opens it first gets to finish the sign-in."))
    expires_at: datetime
    sign_in: OAuthSignInType = strawberry.field(description="Poll it with oauthSignIn(id).")


@strawberry.input(
    name="StartOAuthSignInInput",
    description="A “Sign in with …”: the provider gives the address and the tokens; the rest is as "
    "for connectMailAccount. accountId reconnects that account (e.g. one in NEEDS_REAUTH).",
)
class StartOAuthSignInInput:
    provider: str
    account_id: strawberry.ID | None = None
    email: str | None = strawberry.field(default=None, description="The mailbox to suggest at the provider.")
    display_name: str = ""
    sharing: SharingEnum = SharingPermission.PRIVATE  # type: ignore[valid-type]
    sync_days_limit: int | None = None
    options: list[ProviderOptionValue] | None = None
    incoming: ServerInput | None = strawberry.field(default=None, description="Overrides the preset (no password).")
    outgoing: ServerInput | None = strawberry.field(default=None, description="Overrides the preset (no password).")

    def to_core(self) -> oauth_sign_in.SignInRequest:
        return oauth_sign_in.SignInRequest(
            provider=self.provider,
            account_id=parse_id(self.account_id, field="accountId") if self.account_id is not None else None,
            email=self.email, display_name=self.display_name, sharing=SharingPermission(self.sharing),
            sync_days_limit=self.sync_days_limit, options={o.name: o.value for o in self.options or []},
            incoming=self.incoming.to_core() if self.incoming else None,
            outgoing=self.outgoing.to_core() if self.outgoing else None,
        )


@strawberry.type
class OAuthSignInQueries:
    @strawberry.field(name="oauthSignIn", description="One of your sign-ins: how its consent ended.")
    async def oauth_sign_in(self, info: Info, id: strawberry.ID) -> OAuthSignInType:
        row = await oauth_sign_in.get_sign_in(info.context.user, parse_id(id))
        return OAuthSignInType.from_model(row)


@strawberry.type
class OAuthSignInMutations:
    @strawberry.mutation(name="startOAuthSignIn", description="Start a “Sign in with …” (connect or reconnect "
                         "a mailbox): open the answer's authorizationUrl in the browser.")
    async def start_oauth_sign_in(self, info: Info, input: StartOAuthSignInInput) -> OAuthSignInStartType:
        services = info.context.services
        started = await oauth_sign_in.start_sign_in(
            info.context.user, input.to_core(), registry=services.providers, secrets=services.secrets,
            settings=services.settings, policy=services.connect_policy,
        )
        return OAuthSignInStartType(authorization_url=started.authorization_url,
                                    expires_at=started.sign_in.expires_at,
                                    sign_in=OAuthSignInType.from_model(started.sign_in))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="referrer" content="no-referrer"><title>{title}</title>
<style>body{{font:16px system-ui,sans-serif;max-width:36em;margin:3em auto;padding:0 1em}}
code{{background:#eee;padding:0 .2em}}</style></head>
<body><h1>{title}</h1><p id="message">{message}</p>{code}</body></html>"""


_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def launch_response(launch: Launch | None, error: SalesInboxError | None) -> Response:
    """``/oauth/start``'s answer: a 303 to the provider's consent page that sets the
    browser's binding cookie (HttpOnly, SameSite=Lax so that it comes back with the
    provider's top-level redirect to the callback), or the error page."""
    if launch is None:
        assert error is not None
        return _page("The sign-in could not start", error.message, error.code.value)
    response = RedirectResponse(launch.provider_url, 303, headers=_NO_STORE)
    binding = launch.binding
    response.set_cookie(binding.name, binding.value, path=binding.path, secure=binding.secure,
                        httponly=True, samesite="lax", max_age=binding.max_age)
    return response


def _page(title: str, message: str, error_code: str | None) -> HTMLResponse:
    """A small self-contained page (no external assets, text escaped, never cached)."""
    code = "" if error_code is None else f'<p>Error code: <code id="code">{html.escape(error_code)}</code></p>'
    page = _PAGE.format(title=title, message=html.escape(message), code=code)
    return HTMLResponse(page, 200 if error_code is None else 400,
                        headers={**_NO_STORE, "Content-Security-Policy": _PAGE_CSP})


def callback_response(outcome: SignInOutcome) -> Response:
    """The callback's answer: a 303 to the admin's frontend page when one is set, else a
    small self-contained page (no external assets, text escaped, never cached)."""
    if outcome.frontend_redirect_url:
        if outcome.status == OAuthSignInStatus.CONNECTED:
            query = {"status": "connected", "accountId": str(outcome.account_id)}
        else:
            query = {"status": "error", "code": outcome.error_code or ""}
        separator = "&" if "?" in outcome.frontend_redirect_url else "?"
        return RedirectResponse(f"{outcome.frontend_redirect_url}{separator}{urlencode(query)}", 303,
                                headers=_NO_STORE)
    if outcome.status == OAuthSignInStatus.CONNECTED:
        return _page("Mailbox connected", outcome.message, None)
    return _page("The mailbox was not connected", outcome.message, outcome.error_code or "")
