"""Credentials in URLs: refused in params, masked in every text shown or written."""

from __future__ import annotations

from pathlib import Path

import pytest

from meetinglib.core.errors import InvalidParamError
from meetinglib.core.params import load_params
from meetinglib.core.secrets import redact, redact_tree, url_secrets

DEFAULTS = Path(__file__).resolve().parent.parent / "params" / "demo.yaml"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bob:hunter2@db/shop",
        "sqlite:////data/shop.db?password=hunter2",
        "postgresql://db/shop?pwd=hunter2",
        "mysql://db/shop?sslmode=x&secret=hunter2",
        "https://api.example/x?token=hunter2",
        "https://api.example/x?api_key=hunter2",
        "https://api.example/x?Key=hunter2",
        "postgresql://db/shop?client-secret=hunter2",
        "postgresql://bob:hun/ter2@db/shop",  # an unencoded "/", which SQLAlchemy still reads
    ],
)
def test_credential_urls_are_found_and_masked(url: str) -> None:
    assert url_secrets(url)
    masked = redact(f"could not connect to {url}: timeout")
    assert "hunter2" not in masked and "ter2" not in masked
    assert "***" in masked


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bob@db/shop",
        "sqlite:///shop.db?mode=ro",
        "https://x.example/?q=key",
        "https://x.example:8443/people/@me",  # a port, then an "@" in the path
    ],
)
def test_plain_urls_are_left_alone(url: str) -> None:
    assert url_secrets(url) == []
    if "@" not in url.partition("://")[2].partition("/")[2]:
        # an "@" in a path is masked up to it in text shown: too much, never too little
        assert redact(url) == url


def test_redact_tree_masks_nested_strings() -> None:
    tree = {"source": {"url": "x://h/db?token=abc", "n": 3}, "l": ["u://a:b@h/"]}
    assert redact_tree(tree) == {
        "source": {"url": "x://h/db?token=***", "n": 3},
        "l": ["u://a:***@h/"],
    }


@pytest.mark.parametrize(
    "url, kind",
    [
        ("sqlite:////data/shop.db?password=hunter2", "password"),
        ("postgresql://bob:hunter2@db/shop", "user info"),
        ("postgresql://db/shop?token=hunter2", "token"),
    ],
)
def test_params_refuse_a_url_with_a_credential(tmp_path, url: str, kind: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(f"source:\n  kind: sql\n  url: '{url}'\n", encoding="utf-8")
    with pytest.raises(InvalidParamError, match=f"credential.*{kind}.*url_env") as err:
        load_params(DEFAULTS, f)
    assert "hunter2" not in str(err.value)
