"""Pure parts of the dashboard: feed cursors, session cookies, ``since``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmstream.streams.web.app import ApiError, parse_since
from crmstream.streams.web.auth import Authenticator
from crmstream.streams.web.feed import Cursor

cursors = st.dictionaries(st.integers(0, 1023), st.integers(0, 2**62), min_size=1, max_size=64)


@given(cursors)
def test_a_cursor_survives_its_event_id(positions):
    cursor = Cursor(positions)
    assert Cursor.parse(cursor.render()) == positions


@given(st.text(max_size=80))
def test_any_last_event_id_is_a_cursor_or_a_value_error(text):
    try:
        cursor = Cursor.parse(text)
    except ValueError:
        return
    assert all(isinstance(p, int) and isinstance(o, int) for p, o in cursor.items())


@given(st.text(max_size=200))
def test_forged_session_cookies_are_refused(text):
    auth = Authenticator("secret-token", 3600)
    assert auth.session(text) is None


def test_a_tampered_session_cookie_is_refused():
    auth = Authenticator("secret-token", 3600)
    cookie = auth.issue("ana")
    name, expires, csrf, signature = cookie.split(".")
    assert auth.session(cookie).name == "ana"
    assert auth.session(".".join(("bWFsbG9yeQ", expires, csrf, signature))) is None
    assert auth.session(".".join((name, str(int(expires) + 999), csrf, signature))) is None


def test_bearer_tokens():
    auth = Authenticator("secret-token", 3600)
    assert auth.bearer("Bearer secret-token").via == "token"
    for header in (None, "", "secret-token", "Bearer wrong", "Basic secret-token"):
        assert auth.bearer(header) is None
    with pytest.raises(ValueError, match="CRM_API_TOKEN"):
        Authenticator("", 3600)


def test_since_accepts_durations_and_iso_times_only():
    now = datetime(2026, 5, 1, tzinfo=UTC)
    assert parse_since("2d", now) == datetime(2026, 4, 29, tzinfo=UTC)
    assert parse_since("2026-04-30T00:00:00").tzinfo is not None
    for bad in ("", "2w", "-5m", "soon"):
        with pytest.raises(ApiError) as raised:
            parse_since(bad, now)
        assert (raised.value.status, raised.value.code) == (422, "invalid_since")
