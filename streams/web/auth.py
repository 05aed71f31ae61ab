"""Who is asking: the API's bearer token and the page's signed session cookie.

The API takes ``Authorization: Bearer <CRM_API_TOKEN>``. The page logs in with a form
(a name, recorded with acknowledgements, and the same token) and gets a session cookie
(HttpOnly, SameSite=Strict), signed with a key derived from the token, so every dashboard
process sharing the token accepts it and changing the token ends every session. The
cookie carries a CSRF token that the page must echo in ``X-CSRF-Token`` on every POST.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

SESSION_COOKIE = "crm_session"
CSRF_HEADER = "x-csrf-token"
_NAME = re.compile(r"^[\w .@'-]{1,64}$")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``via`` is ``token`` or ``session``."""

    name: str
    via: str
    csrf: str = ""


def valid_name(name: str) -> bool:
    """Whether ``name`` may be recorded as who acknowledged an alert.

    >>> valid_name("Ana Lima"), valid_name(""), valid_name("<script>")
    (True, False, False)
    """
    return bool(_NAME.match(name))


class Authenticator:
    """Checks bearer tokens and issues and checks session cookies."""

    def __init__(self, token: str, session_seconds: float) -> None:
        if not token:
            raise ValueError("CRM_API_TOKEN must be set")
        self._token = token.encode()
        self._key = hashlib.sha256(b"crmstream-dashboard-session\x00" + self._token).digest()
        self.session_seconds = session_seconds

    def token_matches(self, candidate: str) -> bool:
        """Constant-time comparison with the configured token."""
        return hmac.compare_digest(candidate.encode(), self._token)

    def bearer(self, header: str | None) -> Principal | None:
        """The caller of an ``Authorization`` header, if it carries the token."""
        if not header or not header.startswith("Bearer "):
            return None
        return Principal("api", "token") if self.token_matches(header[7:].strip()) else None

    def issue(self, name: str, now: float | None = None) -> str:
        """A session cookie value for ``name``.

        >>> auth = Authenticator("t0ken", 60)
        >>> auth.session(auth.issue("ana", now=1000.0), now=1030.0).name
        'ana'
        >>> auth.session(auth.issue("ana", now=1000.0), now=1061.0) is None   # expired
        True
        >>> Authenticator("other", 60).session(auth.issue("ana")) is None     # other token
        True
        """
        expires = int((time.time() if now is None else now) + self.session_seconds)
        payload = ".".join((_b64(name.encode()), str(expires), secrets.token_urlsafe(24)))
        return f"{payload}.{self._sign(payload)}"

    def session(self, cookie: str | None, now: float | None = None) -> Principal | None:
        """The caller of a session cookie, if it is genuine and not expired."""
        if not cookie or cookie.count(".") != 3:
            return None
        payload, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        name, expires, csrf = payload.split(".")
        if not expires.isdigit() or int(expires) < (time.time() if now is None else now):
            return None
        try:
            return Principal(base64.urlsafe_b64decode(name + "==").decode(), "session", csrf)
        except (ValueError, UnicodeDecodeError):
            return None

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return _b64(digest)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
