"""Who may use the review page, and proof that a form was sent by it (CSRF).

A browser gets a signed session cookie (``HttpOnly``, ``SameSite=Strict``) on its first page.
When the server has an API key, the page asks for it once on a login form (never in a URL) and
marks the session as signed in; scripts may send ``X-API-Key`` instead. Every form and every
script POST carries a CSRF token derived from the session: a page on another site can neither
read it nor guess it, so it cannot make a reviewer's browser post a verdict.

The signing key is derived from the API key when there is one (sessions survive restarts and
work across workers; rotating the key signs everyone out), else it is random per process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

SESSION_COOKIE = "cg_review_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Session:
    sid: str
    expires: int
    signed_in: bool


class PageGuard:
    """Issues and checks session cookies and CSRF tokens for one server."""

    def __init__(self, api_key: str | None, session_hours: float) -> None:
        self.api_key = api_key
        self.lifetime = int(session_hours * 3600)
        seed = hashlib.sha256(b"collectguard-review-session:" + api_key.encode()).digest() if api_key else None
        self._secret = seed or secrets.token_bytes(32)

    @property
    def needs_login(self) -> bool:
        return bool(self.api_key)

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()

    def new_session(self, signed_in: bool = False) -> tuple[Session, str]:
        """A fresh session and its cookie value (a new id on every sign-in: no fixation)."""
        session = Session(secrets.token_urlsafe(18), int(time.time()) + self.lifetime, signed_in)
        payload = f"{session.sid}.{session.expires}.{int(signed_in)}"
        return session, f"{payload}.{self._sign(payload)}"

    def read_session(self, cookie: str | None) -> Session | None:
        """The session a cookie proves, or None (missing, forged, malformed or expired)."""
        if not cookie or cookie.count(".") != 3:
            return None
        sid, expires, flag, sig = cookie.split(".")
        if not hmac.compare_digest(sig, self._sign(f"{sid}.{expires}.{flag}")):
            return None
        if not expires.isdigit() or int(expires) < time.time():
            return None
        return Session(sid, int(expires), flag == "1")

    def key_ok(self, given: str | None) -> bool:
        return bool(self.api_key) and given is not None and hmac.compare_digest(given.encode(), self.api_key.encode())

    def allowed(self, session: Session | None, header_key: str | None) -> bool:
        """May this request see the page? Always, when the server has no key."""
        if not self.api_key:
            return True
        return (session is not None and session.signed_in) or self.key_ok(header_key)

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf:{session.sid}")

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        return session is not None and token is not None and hmac.compare_digest(token, self.csrf_token(session))
