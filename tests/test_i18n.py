import re
import string
from pathlib import Path

import pytest

from meetinglib.i18n import LABELS, LANGUAGES, t

HAN = re.compile(r"[\u4e00-\u9fff]")


def _fields(text):
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


@pytest.mark.parametrize("key", sorted(LABELS))
def test_every_label_has_both_languages_with_the_same_fields(key):
    en, zh = LABELS[key]
    assert en.strip() and zh.strip(), key
    assert _fields(en) == _fields(zh), key
    assert not HAN.search(en), f"{key}: Chinese text in the English label"


def test_chinese_labels_are_chinese():
    words = [zh for key, (_, zh) in LABELS.items() if not key.startswith(("unit.", "word.p90"))]
    share = sum(bool(HAN.search(zh)) for zh in words) / len(words)
    assert share > 0.9


def test_t_formats_and_rejects_unknowns():
    assert t("cli.handouts_at", "en", week="2026-W47", path="x") == "Handouts for 2026-W47: x"
    assert t("word.this_week", "zh-CN") == "本周"
    with pytest.raises(KeyError, match="no label 'nope'"):
        t("nope")
    with pytest.raises(ValueError, match="language 'fr' not supported"):
        t("word.this_week", "fr")
    assert LANGUAGES == ("en", "zh-CN")


def test_every_label_used_in_the_code_exists():
    src = "\n".join(
        p.read_text(encoding="utf-8")
        for p in (Path(__file__).parents[1] / "meetinglib").rglob("*.py")
    )
    used = set(re.findall(r"""(?:\bt|self\._t)\(\s*["']([a-z_]+\.[a-z0-9_.]+)["']""", src))
    missing = sorted(k for k in used if k not in LABELS)
    assert not missing, f"labels used but not defined: {missing}"
