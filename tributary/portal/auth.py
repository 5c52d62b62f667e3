"""Who is signed in to the holder portal, and what they may open.

- **Sign-in links** are signed (HMAC-SHA256 via itsdangerous) and carry their holder and
  expiry; ``tributary portal link <holder>`` mints one (``make demo`` prints one per holder).
- **Sessions** are signed cookies (HttpOnly, SameSite=Lax, Secure behind TLS) holding the
  holder, the session's expiry and its CSRF token; nothing is kept server-side.
- **Forms** carry the session's CSRF token and are refused without it.
- **References**: every id a page links to (payouts, ledger credits) travels as
  ``<id>.<tag>``, the tag an HMAC of (holder, id). A URL made for one holder opens nothing
  for another, and ids cannot be guessed or enumerated, before the ownership check that
  every route also makes against the session's holder.

The signing secret is ``TRIBUTARY_PORTAL_SECRET`` or, locally, a 0600 file in the run dir
created on first use (the CLI and the portal process share it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

SIGNIN_SALT = "tributary-portal-signin"
SESSION_SALT = "tributary-portal-session"
DEFAULT_LINK_TTL_S = 24 * 3600
SESSION_TTL_S = 12 * 3600
SECRET_ENV = "TRIBUTARY_PORTAL_SECRET"


class LinkError(ValueError):
    """A sign-in link that is forged, damaged or expired (the message says which)."""


def load_secret(run_dir: Path) -> str:
    """The signing secret: the environment's, else the local run dir's (created once)."""
    configured = os.environ.get(SECRET_ENV)
    if configured:
        if len(configured) < 32:
            raise ValueError(f"{SECRET_ENV} must be at least 32 characters (use `openssl rand -hex 32`)")
        return configured
    path = run_dir / "portal-secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    run_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    partial = path.with_name(f".portal-secret.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret)
    try:
        os.link(partial, path)  # the first process to get here sets it; the others read it
    except FileExistsError:
        secret = path.read_text().strip()
    finally:
        partial.unlink()
    return secret


@dataclass(frozen=True)
class Session:
    holder_id: str
    expires_at: float
    csrf: str


class Signer:
    def __init__(self, secret: str):
        self._links = URLSafeSerializer(secret, salt=SIGNIN_SALT)
        self._sessions = URLSafeSerializer(secret, salt=SESSION_SALT)
        self._ref_key = hashlib.sha256(b"tributary-portal-ref\x00" + secret.encode()).digest()

    # -- sign-in links ----------------------------------------------------------------
    def signin_token(self, holder_id: str, ttl_s: int = DEFAULT_LINK_TTL_S, now: float | None = None) -> str:
        if ttl_s <= 0:
            raise ValueError("a sign-in link must live for at least a second")
        issued = int(now if now is not None else time.time())
        return str(self._links.dumps({"h": holder_id, "exp": issued + ttl_s, "n": secrets.token_hex(4)}))

    def holder_of_link(self, token: str, now: float | None = None) -> str:
        """The holder a sign-in token was made for; LinkError if forged or expired."""
        try:
            claims: Any = self._links.loads(token)
        except BadSignature:
            raise LinkError("this sign-in link is not valid (it was changed or cut short)") from None
        if not isinstance(claims, dict) or not isinstance(claims.get("h"), str) or not isinstance(claims.get("exp"), int):
            raise LinkError("this sign-in link is not valid")
        if (now if now is not None else time.time()) >= claims["exp"]:
            raise LinkError("this sign-in link has expired")
        return str(claims["h"])

    # -- sessions -------------------------------------------------------------------------
    def new_session(self, holder_id: str, now: float | None = None) -> tuple[Session, str]:
        session = Session(holder_id, (now if now is not None else time.time()) + SESSION_TTL_S, secrets.token_hex(16))
        return session, str(self._sessions.dumps({"h": holder_id, "exp": session.expires_at, "c": session.csrf}))

    def session(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie carries; None when absent, forged or expired."""
        if not cookie:
            return None
        try:
            claims: Any = self._sessions.loads(cookie)
        except BadSignature:
            return None
        if not isinstance(claims, dict) or not isinstance(claims.get("h"), str):
            return None
        expires = claims.get("exp")
        if not isinstance(expires, int | float) or (now if now is not None else time.time()) >= expires:
            return None
        return Session(claims["h"], float(expires), str(claims.get("c", "")))

    @staticmethod
    def csrf_ok(session: Session, submitted: str | None) -> bool:
        return bool(submitted) and bool(session.csrf) and hmac.compare_digest(session.csrf, submitted or "")

    # -- references in URLs -------------------------------------------------------------
    def ref(self, holder_id: str, ident: str) -> str:
        tag = hmac.new(self._ref_key, f"{holder_id}\x00{ident}".encode(), hashlib.sha256).hexdigest()[:20]
        return f"{ident}.{tag}"

    def unref(self, holder_id: str, ref: str) -> str | None:
        """The id behind a reference made for this holder; None for anything else."""
        ident, _, tag = ref.rpartition(".")
        if not ident or not tag:
            return None
        return ident if hmac.compare_digest(self.ref(holder_id, ident), ref) else None
