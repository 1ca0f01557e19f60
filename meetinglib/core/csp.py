"""The Content-Security-Policy every HTML file of the toolkit carries.

No script at all, images only from ``data:`` URIs, styles only inline, nothing
fetched from anywhere: if an escaping mistake ever lets markup through, a browser
still runs no code and loads nothing.
"""

from __future__ import annotations

import re

POLICY = (
    "default-src 'none'; script-src 'none'; object-src 'none'; img-src data:; "
    "style-src 'unsafe-inline'; font-src data:; base-uri 'none'; form-action 'none'"
)
META = f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'

_HEAD = re.compile(r"<head(?:\s[^>]*)?>", re.IGNORECASE)
_ANY_CSP = re.compile(r"<meta[^>]+http-equiv=[\"']?content-security-policy", re.IGNORECASE)


def with_csp(page: str) -> str:
    """The page with the policy as the first element of its <head> (added once)."""
    if _ANY_CSP.search(page):
        return page
    head = _HEAD.search(page)
    if head is None:
        raise ValueError("an HTML page without <head>: cannot place its Content-Security-Policy")
    # First in <head>, so it governs everything after it.
    return f"{page[: head.end()]}\n{META}{page[head.end() :]}"
