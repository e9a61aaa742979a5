"""redact_url and friends: no user info or secret query value survives, the rest does."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline_core.urls import (
    REDACTED,
    has_userinfo,
    is_secret_param,
    redact_url,
    redact_urls_in,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:tok@example.org/a.csv", "https://example.org/a.csv"),
        ("https://user@example.org:8443/a.csv", "https://example.org:8443/a.csv"),
        ("https://u:p%40ss@h/a?page=2", "https://h/a?page=2"),
        ("https://h/a.csv?token=abc&page=2", f"https://h/a.csv?token={REDACTED}&page=2"),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=ff&v=1",
            f"https://b.s3.amazonaws.com/k?X-Amz-Credential={REDACTED}"
            f"&X-Amz-Signature={REDACTED}&v=1",
        ),
        ("https://h/a?api_key=1&sig=2", f"https://h/a?api_key={REDACTED}&sig={REDACTED}"),
        ("https://h/a?page=2&sort=name", "https://h/a?page=2&sort=name"),
        ("http://127.0.0.1:8000/cities.csv", "http://127.0.0.1:8000/cities.csv"),
        ("https://h/a#frag-with-token", "https://h/a"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_url_never_raises_on_text_that_is_not_a_url() -> None:
    # An unbalanced IPv6 bracket makes urlsplit raise: what follows the last `@` is kept.
    assert redact_url("http://u:pw@[::1/a") == "[::1/a"
    assert redact_url("not a url") == "not a url"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("token", True),
        ("access_token", True),
        ("apikey", True),
        ("X-Amz-Date", True),
        ("x-goog-signature", True),
        ("password", True),
        ("code", True),
        ("page", False),
        ("format", False),
        ("zipcode", False),
    ],
)
def test_is_secret_param(name: str, secret: bool) -> None:
    assert is_secret_param(name) is secret


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://u:p@h/a", True),
        ("https://u@h/a", True),
        ("https://:p@h/a", True),
        ("https://h/a?email=a@b.org", False),
        ("https://h/a", False),
        ("http://u:pw@[::1/a", True),  # does not parse: any `@` counts
    ],
)
def test_has_userinfo(url: str, expected: bool) -> None:
    assert has_userinfo(url) is expected


def test_redact_urls_in_text_keeps_the_words_around() -> None:
    text = "HTTP 401 from https://u:pw@h/a.csv?key=k1 after 2 attempts; see http://h/b?page=1"
    assert redact_urls_in(text) == (
        f"HTTP 401 from https://h/a.csv?key={REDACTED} after 2 attempts; see http://h/b?page=1"
    )
    assert redact_urls_in("no url here: a@b") == "no url here: a@b"


def test_an_error_text_quoting_the_url_is_redacted() -> None:
    url = "https://u:pw@h/a"
    assert redact_urls_in(f"ConnectError: refused ({url})") == "ConnectError: refused (https://h/a)"
    assert redact_urls_in("unchanged") == "unchanged"


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)
_host = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z]{2,6}){0,2}", fullmatch=True)
_path = st.lists(st.from_regex(r"[A-Za-z0-9._-]{1,10}", fullmatch=True), max_size=3)


@given(
    user=_text,
    password=_text,
    host=_host,
    path=_path,
    secret_key=st.sampled_from(["token", "X-Amz-Signature", "api_key", "sig", "password"]),
    secret_value=_text,
    plain=st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
)
def test_no_credential_survives_redaction(
    user: str,
    password: str,
    host: str,
    path: list[str],
    secret_key: str,
    secret_value: str,
    plain: str,
) -> None:
    """Whatever the user name, password and secret query value are, none of them is left in
    the redacted URL (nor in a text quoting it), while host, path and plain values stay."""
    marker = "\N{SNOWMAN}"  # never in a host, path or plain value drawn here
    user, password, secret_value = (marker + s for s in (user, password, secret_value))
    url = (
        f"https://{quote(user, safe='')}:{quote(password, safe='')}@{host}/{'/'.join(path)}"
        f"?page={plain}&{secret_key}={quote(secret_value, safe='')}"
    )
    for redacted in (redact_url(url), redact_urls_in(f"failed ({url}) twice")):
        assert marker not in redacted
        assert quote(marker) not in redacted
        assert f"page={plain}" in redacted
    parts = urlsplit(redact_url(url))
    assert (parts.hostname, parts.path) == (host, "/" + "/".join(path))
    assert not has_userinfo(redact_url(url))
