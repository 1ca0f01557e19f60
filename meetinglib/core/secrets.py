"""Credentials in URLs: find them (to refuse them in params) and mask them in text.

A credential is a URL's user-info password (``user:pw@host``) or a query parameter
whose name says it is one (password, pwd, passwd, secret, token, key, api_key,
access_token, auth, sig, signature, credential...). Text that is printed, logged or
written to ``manifest.json`` goes through :func:`redact` first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MASK = "***"

# Query parameter names (lower case, '-' read as '_') that carry a credential.
SECRET_NAMES = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "auth",
        "auth_token",
        "key",
        "api_key",
        "apikey",
        "access_key",
        "secret_key",
        "private_key",
        "sig",
        "signature",
        "credential",
        "credentials",
        "sslpassword",
    }
)

_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@?#]*):(?P<pw>[^@\s/]*)@")
# A password holding an unencoded "/" (not valid in a URL, yet read by SQLAlchemy): in
# text shown or written everything up to the "@" is masked, a path's "@" included, since
# masking too much costs nothing there.
_USERINFO_LOOSE = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@?#]*):(?P<pw>[^@\s]*)@")
# A value ends before sentence punctuation that follows the URL in a message.
_QUERY = re.compile(
    r"(?P<head>[?&;](?P<name>[A-Za-z0-9_.\-]+)=)(?P<value>(?:[^&;#\s'\"]*[^&;#\s'\".,)])?)"
)


def _is_secret_name(name: str) -> bool:
    n = name.lower().replace("-", "_")
    return n in SECRET_NAMES or n.endswith(("_password", "_secret", "_token", "_key"))


def _slashed_password(url: str) -> bool:
    """Whether the URL's user info holds a password with an unencoded "/" (user:a/b@host),
    which the strict pattern, stopping at the path, does not see; a port before the path
    (host:8080/x@y) is no password."""
    _scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return False
    user, colon, password = rest.rsplit("@", 1)[0].partition(":")
    if not colon or "/" in user or "/" not in password:
        return False
    return not password.split("/", 1)[0].isdigit()


def url_secrets(url: str) -> list[str]:
    """The kinds of credential the URL holds ('password in user info', 'query parameter x')."""
    found: list[str] = []
    if _USERINFO.search(url) or _slashed_password(url):
        found.append("a password in the user info (user:password@)")
    try:
        query = urlsplit(url).query
    except ValueError:
        query = url.partition("?")[2]
    for name, _ in parse_qsl(query, keep_blank_values=True):
        if _is_secret_name(name):
            found.append(f"the query parameter '{name}'")
    return found


def redact(text: str) -> str:
    """The text with every URL password and credential query value replaced by ***."""
    if not text:
        return text
    text = _USERINFO_LOOSE.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _QUERY.sub(
        lambda m: f"{m['head']}{MASK}" if _is_secret_name(m["name"]) and m["value"] else m[0],
        text,
    )


def redact_tree(value: Any) -> Any:
    """A copy of a JSON-like tree (dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [redact_tree(v) for v in value]
    return value
