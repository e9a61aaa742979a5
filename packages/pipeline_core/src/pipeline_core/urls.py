"""One place that makes a URL safe to store or print.

Every URL that reaches a manifest, an error text, a log line or an artifact goes through
`redact_url`: user info is dropped and the values of query parameters named like secrets
are replaced, so a signed or token-bearing URL never leaks its credential.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "REDACTED"
# Query keys that carry credentials: token, access_token, api_key, apikey, key, sig,
# signature, password, secret, auth, credential, session, and every X-Amz-* / X-Goog-*
# parameter of a presigned URL.
_SECRET_KEY = re.compile(
    r"(token|key|sig|signature|passw(or)?d|pwd|secret|auth|credential|session|^code$)"
    r"|^x-(amz|goog)-",
    re.IGNORECASE,
)


def is_secret_param(name: str) -> bool:
    """Whether a query parameter of this name carries a credential.

    Example:
        >>> is_secret_param("X-Amz-Signature"), is_secret_param("page")
        (True, False)
    """
    return bool(_SECRET_KEY.search(name))


def has_userinfo(url: str) -> bool:
    """Whether `url` embeds a user name or password (`https://user:pw@host/...`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "@" in url
    return parts.username is not None or parts.password is not None


def redact_url(url: str) -> str:
    """`url` without user info and with secret-looking query values replaced.

    Never raises: text that does not parse as a URL is reduced to what follows its last `@`.

    Example:
        >>> redact_url("https://me:tok@example.org/a.csv?token=abc&page=2")
        'https://example.org/a.csv?token=REDACTED&page=2'
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(is_secret_param(k) for k, _ in pairs):
                query = urlencode(
                    [(k, REDACTED if is_secret_param(k) else v) for k, v in pairs], safe="/:"
                )
        return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return url.rsplit("@", 1)[-1]


# A URL inside free text: a scheme, then anything up to white space or a quote (brackets
# are kept in: a password may hold them, and cutting there would leave it behind).
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_urls_in(text: str) -> str:
    """`text` with every URL in it passed through `redact_url`.

    For texts that may quote URLs nobody listed beforehand (error messages, log values).

    Example:
        >>> redact_urls_in("HTTP 401 from https://u:pw@example.org/a.csv?sig=x (retrying)")
        'HTTP 401 from https://example.org/a.csv?sig=REDACTED (retrying)'
    """
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
