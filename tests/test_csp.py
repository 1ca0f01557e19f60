"""Every HTML page gets the Content-Security-Policy first in its <head>, once."""

from __future__ import annotations

import pytest

from meetinglib.core.csp import META, POLICY, with_csp


def test_policy_forbids_script_and_outside_loads() -> None:
    assert "script-src 'none'" in POLICY
    assert "default-src 'none'" in POLICY
    assert "img-src data:" in POLICY
    assert "style-src 'unsafe-inline'" in POLICY


def test_meta_goes_first_in_head_and_only_once() -> None:
    page = '<!DOCTYPE html><html><head lang="en"><meta charset="utf-8"></head><body></body></html>'
    once = with_csp(page)
    assert once.index(META) < once.index('<meta charset="utf-8">')
    assert with_csp(once) == once


def test_a_page_without_head_is_refused() -> None:
    with pytest.raises(ValueError, match="without <head>"):
        with_csp("<p>hi</p>")
