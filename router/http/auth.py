"""Who may call the HTTP API: bearer tokens, each with scopes and an expiry.

Configuration holds only each token's SHA-256 digest (a tokens file, `LIANBAN_TOKENS_FILE`),
so a leaked configuration opens nothing; the token itself is shown once, when it is minted
(`lianban token new`). Tokens are 256 random bits, so a plain digest cannot be guessed
back. A request is refused before its route runs: it leaves no trace in state.

    missing or unknown token → 401    expired → 401    token without the scope → 403
    too many unknown or expired tokens from one client this minute → 429 (router.http.guessing)

The tokens are read through `app.state.api_tokens`, a callable: a tokens file is read
again when it changes (`runtime.reloading`), so a revoked token is refused within a minute.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from router.http.guessing import CredentialGuesses
from router.http.tokens import (
    TOKEN_PREFIX,
    ApiToken,
    Scope,
    Tokens,
    digest,
    find_token,
    fixed_tokens,
    load_tokens,
    manual_scope,
    mint,
)

# The token model lives in router.http.tokens; importers of these names here keep working.
__all__ = [
    "TOKEN_PREFIX",
    "ApiToken",
    "Credentials",
    "Scope",
    "Tokens",
    "authorize",
    "digest",
    "find_token",
    "fixed_tokens",
    "load_tokens",
    "manual_scope",
    "mint",
    "require_scope",
]

REALM = "lianban"
_UNKNOWN_TOKEN = "the token is unknown or expired"

_bearer = HTTPBearer(auto_error=False, description="A token minted with `lianban token new`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def authorize(
    request: Request, credentials: HTTPAuthorizationCredentials | None, scope: str
) -> ApiToken:
    """The caller's token if it is valid and carries `scope`; otherwise a 401 or 403
    (an unknown or expired token is counted against its client, `router.http.guessing`)."""
    verdict = _verdict(request, credentials, scope)
    if isinstance(verdict, ApiToken):
        return verdict
    _count_guess(request, verdict)
    raise verdict


def require_scope(scope: str) -> Callable[..., Awaitable[ApiToken]]:
    """A FastAPI dependency admitting only callers whose token carries `scope`:
    `dependencies=[Depends(require_scope(Scope.OPS))]`, or a parameter to learn who called."""

    async def authorized(request: Request, credentials: Credentials) -> ApiToken:
        # On the event loop: a token is checked with a digest and a comparison per
        # configured token, less than the thread-pool hop a plain function costs every
        # request. Only counting a guess, which may write the audit log, goes there.
        verdict = _verdict(request, credentials, scope)
        if isinstance(verdict, ApiToken):
            return verdict
        await run_in_threadpool(_count_guess, request, verdict)
        raise verdict

    return authorized


def _verdict(
    request: Request, credentials: HTTPAuthorizationCredentials | None, scope: str
) -> ApiToken | HTTPException:
    """The caller's token, or the refusal to raise; nothing counted, nothing written."""
    if credentials is None:
        return HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="a bearer token is required",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
        )
    guesses: CredentialGuesses | None = getattr(request.app.state, "guesses", None)
    retry_after = guesses.retry_after(_client(request)) if guesses else None
    if retry_after is not None:
        return HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="too many unknown tokens from this client; retry later",
            headers={"Retry-After": str(retry_after)},
        )
    tokens: Tokens = getattr(request.app.state, "api_tokens", fixed_tokens(()))
    token = find_token(tokens(), credentials.credentials)
    if token is None:
        return HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=_UNKNOWN_TOKEN,
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'},
        )
    if scope not in token.scopes:
        return HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"the token lacks the scope {scope}",
            headers={
                # A manual scope holds the department from the URL, which may be anything:
                # percent-encoded, it always fits a header (found by tests/test_fuzz_intake.py).
                "WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", '
                f'scope="{quote(scope, safe=":")}"'
            },
        )
    return token


def _count_guess(request: Request, refusal: HTTPException) -> None:
    """An unknown or expired token presented: one more guess from its client."""
    guesses: CredentialGuesses | None = getattr(request.app.state, "guesses", None)
    if guesses is not None and refusal.detail == _UNKNOWN_TOKEN:
        guesses.refused(_client(request))


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"
