"""Identifiers that become file names are plain names; writes stay in their folder."""

from __future__ import annotations

import pytest

from meetinglib.core.errors import UnsafeNameError
from meetinglib.core.safename import check_name, inside


@pytest.mark.parametrize("name", ["logistics", "cs", "IT-2", "物流", "2026-W47", "a.b"])
def test_safe_names_pass(name: str) -> None:
    assert check_name(name, "department") == name


@pytest.mark.parametrize(
    "name",
    ["../../../x", "..", ".", "a/b", "a\\b", "", ".hidden", "x" * 65, "con", "a\x00b", "a b", 3],
)
def test_unsafe_names_are_refused(name: object) -> None:
    with pytest.raises(UnsafeNameError, match="cannot be used as a file name"):
        check_name(name, "department")


def test_inside_refuses_escapes(tmp_path) -> None:
    assert inside(tmp_path, "a", "b.csv") == (tmp_path / "a" / "b.csv").resolve()
    with pytest.raises(UnsafeNameError, match="leads outside"):
        inside(tmp_path, "..", "x.csv")
    with pytest.raises(UnsafeNameError, match="leads outside"):
        inside(tmp_path, "/etc/passwd")
