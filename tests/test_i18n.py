"""Tests of meetinglib.core.i18n: the message catalogues and the lookup."""

import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from meetinglib.core.i18n import DOMAIN, LABELS, LANGUAGES, LOCALES, t
from meetinglib.data.validate import RULES, rule_label

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


def test_every_validation_rule_is_named_in_every_language():
    """A rule is a code in the data (``_rule`` of the quarantine files); people read its
    name: `meeting validate`, the data report's appendix and the quarantine files' rule
    column show it in the reader's language, and a rule without one would stop them."""
    for rule in RULES:
        en, zh = rule_label(rule, "en"), rule_label(rule, "zh-CN")
        assert en.strip() and HAN.search(zh), rule


def test_t_formats_and_rejects_unknowns():
    assert t("cli.handouts_at", "en", week="2026-W47", path="x") == "Handouts for 2026-W47: x"
    assert t("word.this_week", "zh-CN") == "本周"
    with pytest.raises(KeyError, match="no text 'nope' in .*en/LC_MESSAGES/meetinglib.po"):
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


def _keys(path: Path) -> set[str]:
    # abort_invalid: an entry without its msgstr is an error, not a warning on stderr
    # (pybabel and other tools then refuse the file)
    with path.open("rb") as f:
        return {str(m.id) for m in read_po(f, abort_invalid=True) if m.id}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_catalogue_has_exactly_the_reference_keys(lang):
    keys = _keys(LOCALES / lang / "LC_MESSAGES" / f"{DOMAIN}.po")
    assert keys == set(LABELS)


def test_the_template_lists_every_key():
    assert _keys(LOCALES / f"{DOMAIN}.pot") == set(LABELS)


def test_babel_extraction_finds_only_known_keys():
    """``pybabel extract -k t -k _t``: every literal key the code looks up is catalogued."""
    package = Path(__file__).parents[1] / "meetinglib"
    found = {
        msg[2]
        for msg in extract_from_dir(
            str(package), method_map=[("**.py", "python")], keywords={"t": None, "_t": None}
        )
        if isinstance(msg[2], str) and re.fullmatch(r"[a-z_]+\.[a-z0-9_.]+", msg[2])
    }
    assert len(found) > 200  # the rest are composed (f"kpi.{key}") and checked above
    assert sorted(found - set(LABELS)) == []


def test_a_third_language_is_one_file(tmp_path):
    """pybabel init from the template makes a catalogue the lookup picks up by its folder."""
    locales = tmp_path / "locales"
    for lang in LANGUAGES:
        target = locales / lang / "LC_MESSAGES"
        target.mkdir(parents=True)
        (target / f"{DOMAIN}.po").write_bytes(
            (LOCALES / lang / "LC_MESSAGES" / f"{DOMAIN}.po").read_bytes()
        )
    done = subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "init", "-i",
         str(LOCALES / f"{DOMAIN}.pot"), "-d", str(locales), "-D", DOMAIN, "-l", "fr"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    po = locales / "fr" / "LC_MESSAGES" / f"{DOMAIN}.po"
    po.write_text(
        po.read_text(encoding="utf-8").replace(
            'msgid "word.this_week"\nmsgstr ""', 'msgid "word.this_week"\nmsgstr "Cette semaine"'
        ),
        encoding="utf-8",
    )
    probe = (
        "import meetinglib.core.i18n as i, pathlib, sys\n"
        f"i.LOCALES = pathlib.Path({str(locales)!r}); i._catalogue.cache_clear()\n"
        "print(i._languages(), i._catalogue('fr')['word.this_week'])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "'fr'" in out.stdout and "Cette semaine" in out.stdout
