from pathlib import Path

import pytest

from meetinglib.core.errors import (
    InvalidParamError,
    MissingParamError,
    ParamsError,
    ParamsFileError,
    UnknownParamError,
)
from meetinglib.core.params import load_params

ROOT = Path(__file__).parents[1]
DEFAULT = ROOT / "params" / "demo.yaml"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_default_params_load_and_resolve_paths_against_their_file():
    p = load_params(DEFAULT)
    assert p.timezone == "Asia/Shanghai"
    assert p.source.path == ROOT / "data" / "sample"
    assert p.output_dir == ROOT / "outputs"
    assert p.notebooks_dir is None  # the notebooks inside the package
    assert p.files == (DEFAULT,)


def test_later_files_override_key_by_key(tmp_path):
    company = write(tmp_path, "acme.yaml", "company: Acme\nsla: {ship_hours: 24}\n")
    p = load_params(DEFAULT, company)
    assert p.company == "Acme"
    assert p.sla.ship_hours == 24
    assert p.timezone == "Asia/Shanghai"  # untouched keys keep the default
    assert p.files == (DEFAULT, company)


def test_relative_path_resolved_against_the_file_that_sets_it(tmp_path):
    over = write(tmp_path, "over.yaml", "source: {path: exports}\n")
    assert load_params(DEFAULT, over).source.path == tmp_path / "exports"


def test_unknown_key_names_file_key_and_known_keys(tmp_path):
    typo = write(tmp_path, "typo.yaml", "sla: {ship_hour: 24}\n")
    with pytest.raises(
        UnknownParamError,
        match=r"unknown key 'sla\.ship_hour' in .*typo\.yaml; "
        r"known keys here: \[.*'ship_hours'\]",
    ):
        load_params(DEFAULT, typo)


def test_unknown_nested_mapping_key(tmp_path):
    typo = write(tmp_path, "m.yaml", "source:\n  tables:\n    orders: {colums: {a: order_id}}\n")
    with pytest.raises(UnknownParamError, match=r"'source\.tables\.orders\.colums' in .*m\.yaml"):
        load_params(DEFAULT, typo)


def test_a_typo_is_reported_before_the_missing_key_it_causes(tmp_path):
    only = write(tmp_path, "only.yaml", "compny: X\ntimezone: UTC\nsource: {path: .}\n")
    with pytest.raises(UnknownParamError, match="unknown key 'compny'"):
        load_params(only)


def test_missing_key(tmp_path):
    only = write(tmp_path, "only.yaml", "timezone: UTC\nsource: {path: .}\n")
    with pytest.raises(MissingParamError, match=r"missing key 'company' in .*only\.yaml"):
        load_params(only)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("timezone: Mars/Olympus\n", r"'timezone' in .*bad\.yaml: unknown timezone 'Mars/Olympus'"),
        ("language: fr\n", r"'language' in .*bad\.yaml"),
        ("history_weeks: 0\n", r"'history_weeks' in .*bad\.yaml"),
        ("source: {tables: {shipments: {}}}\n", r"unknown table\(s\) \['shipments'\]"),
    ],
)
def test_invalid_values(tmp_path, text, pattern):
    bad = write(tmp_path, "bad.yaml", text)
    with pytest.raises(InvalidParamError, match=pattern):
        load_params(DEFAULT, bad)


@pytest.mark.parametrize("value", ["0", "-2", "2.5", "'3'", "true", "[3]"])
def test_a_header_row_that_is_no_row_number_names_file_and_key(tmp_path, value):
    """Rows are counted from 1 as a spreadsheet shows them; "3", 3.0 or true are not
    taken for a row by pydantic's coercion."""
    bad = write(tmp_path, "bad.yaml", f"source: {{tables: {{orders: {{header_row: {value}}}}}}}\n")
    with pytest.raises(
        InvalidParamError,
        match=r"'source\.tables\.orders\.header_row' in .*bad\.yaml: .* is not a row number: "
        r"write the number of the row holding the column names",
    ):
        load_params(DEFAULT, bad)
    amounts = "{file: pay.csv, value: v, header_row: " + value + "}"
    bad.write_text(f"source: {{tables: {{orders: {{amount_from: {amounts}}}}}}}\n")
    with pytest.raises(
        InvalidParamError, match=r"'source\.tables\.orders\.amount_from\.header_row' in .*bad"
    ):
        load_params(DEFAULT, bad)


def test_a_header_row_is_a_whole_number_from_one(tmp_path):
    good = write(tmp_path, "good.yaml", "source: {tables: {orders: {header_row: 3}}}\n")
    assert load_params(DEFAULT, good).source.tables["orders"].header_row == 3
    assert load_params(DEFAULT).source.tables.get("orders") is None  # unset: the first row


def test_password_in_url_is_refused(tmp_path):
    bad = write(tmp_path, "db.yaml", "source: {kind: sql, url: 'postgresql://u:secret@db/x'}\n")
    with pytest.raises(InvalidParamError, match="holds a password.*source.url_env") as info:
        load_params(DEFAULT, bad)
    assert "secret" not in str(info.value)


def test_database_url_from_environment(tmp_path, monkeypatch):
    over = write(tmp_path, "db.yaml", "source: {kind: sql, url_env: SHOP_DB_URL}\n")
    p = load_params(DEFAULT, over)
    with pytest.raises(ParamsError, match="environment variable SHOP_DB_URL"):
        p.source.database_url()
    monkeypatch.setenv("SHOP_DB_URL", "sqlite:///x.db")
    assert p.source.database_url() == "sqlite:///x.db"


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ParamsFileError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")
    broken = write(tmp_path, "broken.yaml", "a: [1, 2\n")
    with pytest.raises(ParamsFileError, match="broken.yaml is not valid YAML"):
        load_params(broken)
    scalar = write(tmp_path, "scalar.yaml", "- a\n- b\n")
    with pytest.raises(ParamsFileError, match="mapping of keys"):
        load_params(scalar)


# --- a company's file stands alone on the package defaults -------------------------------------


def test_company_file_alone_loads_on_the_package_defaults_and_nothing_of_the_demo(tmp_path):
    company = write(
        tmp_path,
        "acme.yaml",
        "company: Acme\ntimezone: America/Sao_Paulo\nsource: {path: exports}\n",
    )
    p = load_params(company)
    assert (p.company, p.timezone, p.source.path) == (
        "Acme",
        "America/Sao_Paulo",
        tmp_path / "exports",
    )
    # None of the demo's warehouses, carriers, targets, promotions or people.
    assert p.targets == {}
    assert (p.plan.warehouses, p.plan.carriers, p.plan.promotions) == ({}, {}, {})
    assert p.plan.customer_service is None
    assert p.meeting.attendees == [] and p.meeting.organizer is None and p.smtp is None
    assert p.notebooks_dir is None  # notebooks come from the package, not the working folder
    assert p.files == (company,)


def test_language_unset_is_the_first_of_the_handouts_languages(tmp_path):
    """A company listing its handouts' languages, Chinese first, gets Chinese wherever
    one language is meant (console, explorer, minutes mail, templates); a language a
    file sets is kept, and without `languages` the package's English stands."""
    base = "company: Acme\ntimezone: Asia/Shanghai\nsource: {path: exports}\n"
    both = write(tmp_path, "both.yaml", base + "languages: [zh-CN, en]\n")
    assert load_params(both).language == "zh-CN"
    assert load_params(both).handout_languages == ("zh-CN", "en")
    chosen = write(tmp_path, "chosen.yaml", base + "language: en\nlanguages: [zh-CN, en]\n")
    assert load_params(chosen).language == "en"
    # set in an earlier layer (the demo's file says `language: en`): kept
    layer = write(tmp_path, "layer.yaml", "languages: [zh-CN, en]\n")
    assert load_params(DEFAULT, layer).language == "en"
    alone = write(tmp_path, "alone.yaml", base)
    assert load_params(alone).language == "en"
    # no language: `languages` is named, not `language`
    wrong = write(tmp_path, "wrong.yaml", base + "languages: [fr, en]\n")
    with pytest.raises(InvalidParamError, match=r"'languages\.0' in .*wrong\.yaml"):
        load_params(wrong)


def test_package_defaults_ship_inside_the_package_and_hold_no_company():
    from meetinglib.core.params import DEFAULTS_FILE

    assert DEFAULTS_FILE.is_file() and "meetinglib" in DEFAULTS_FILE.parts
    text = DEFAULTS_FILE.read_text(encoding="utf-8")
    for demo in ("WH-North", "SwiftExpress", "2026-12-12", "20000", "Demo Shop", "Li Na"):
        assert demo not in text


def test_missing_timezone_names_the_key_and_where_keys_are_documented(tmp_path):
    company = write(tmp_path, "acme.yaml", "company: Acme\nsource: {path: exports}\n")
    with pytest.raises(MissingParamError, match=r"missing key 'timezone'.*defaults/params\.yaml"):
        load_params(company)


def test_no_file_given_means_the_demo(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # also from another working folder
    p = load_params()
    assert p.company == "Demo Shop"
    assert p.files == (ROOT / "params" / "demo.yaml",)
    assert "WH-North" in p.plan.warehouses


@pytest.mark.parametrize("name", ["olist.yaml", "oms.yaml"])
def test_the_examples_load_standalone(name):
    p = load_params(ROOT / "params" / "examples" / name)
    assert p.targets and not p.plan.warehouses and not p.plan.promotions
    assert p.source.tables["orders"].columns
