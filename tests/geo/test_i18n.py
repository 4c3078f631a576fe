"""The catalogues: every message the code shows has its Chinese and its English, and is used."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from geo import i18n
from geo.i18n import _, _l, format_date, format_datetime, ngettext, use_locale

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"\{(\w*)[^{}]*\}")
CJK = re.compile(r"[\u3400-\u9fff]")


def _tool():
    spec = importlib.util.spec_from_file_location("i18n_tool", ROOT / "scripts" / "i18n.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool():
    return _tool()


@pytest.fixture(scope="module")
def template(tool):
    return tool.extract()


def _ids(message):
    return message.id if isinstance(message.id, tuple) else (message.id,)


def _texts(message):
    return message.string if isinstance(message.string, tuple) else (message.string,)


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_every_message_of_the_code_has_a_text(tool, template, locale):
    assert len(template) > 0
    catalog = tool.load(locale)
    missing = tool.missing(catalog, template)
    assert not missing, (
        f"{len(missing)} messages have no {locale} text in {i18n.catalogue_path(locale)} "
        f"(run scripts/i18n.py update, then translate): {missing[:10]}")


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_catalogues_hold_only_what_the_code_uses_sorted(tool, template, locale):
    catalog = tool.load(locale)
    used = {m.id for m in template if m.id}
    stale = [m.id for m in catalog if m.id and m.id not in used]
    assert not stale, f"{locale} has messages no code uses (scripts/i18n.py update): {stale[:10]}"
    ids = [m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id]
    assert ids == sorted(ids), f"{locale} is not sorted (scripts/i18n.py update sorts it)"


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_translations_keep_every_placeholder(tool, locale):
    for message in tool.load(locale):
        if not message.id:
            continue
        wanted = {name for msgid in _ids(message) for name in PLACEHOLDER.findall(msgid)}
        for text in _texts(message):
            got = set(PLACEHOLDER.findall(text or ""))
            assert got <= wanted, f"{locale}: {text!r} has placeholders {message.id!r} lacks"
            # "{n}" may be dropped in a singular ("an alert"); the others are the message.
            assert wanted - {"n"} <= got, f"{locale}: {text!r} lost a placeholder of {message.id!r}"


def test_chinese_texts_are_chinese(tool):
    for message in tool.load("zh_Hans"):
        if not message.id:
            continue
        words = re.findall(r"[A-Za-z]{3,}", PLACEHOLDER.sub("", _ids(message)[0]))
        if not words:  # "PCI", "{count}", codes: nothing to translate
            continue
        for text in _texts(message):
            assert CJK.search(text or ""), f"zh_Hans of {message.id!r} is not Chinese: {text!r}"


def test_gettext_follows_the_current_locale():
    lazy = _l("Error:")
    with use_locale("zh-CN"):
        assert _("Error:") == "错误："
        assert str(lazy) == "错误："
        assert f"{lazy}" == "错误："
    with use_locale("en"):
        assert _("Error:") == "Error:"
        assert str(lazy) == "Error:"
    # A message the catalogue lacks is shown in English rather than not at all.
    with use_locale("zh"):
        assert _("Not in any catalogue {x}", x=1) == "Not in any catalogue 1"
        assert ngettext("{n} thing", "{n} things", 1234) == "1,234 things"


def test_dates_and_numbers_follow_the_locale():
    from datetime import UTC, date, datetime

    when = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
    with use_locale("zh"):
        assert format_date(date(2026, 3, 4), "long") == "2026年3月4日"
        assert format_datetime(when, tz="Asia/Shanghai").startswith("2026年3月4日 13:06")
    with use_locale("en"):
        assert format_date(date(2026, 3, 4), "long") == "March 4, 2026"
        assert format_datetime(when).startswith("Mar 4, 2026")


def test_language_setting_picks_the_default(monkeypatch):
    monkeypatch.setenv("TWIN_LANGUAGE", "zh")
    assert i18n.default_locale() == "zh_Hans"
    monkeypatch.setenv("TWIN_LANGUAGE", "en-GB")
    assert i18n.default_locale() == "en"
    monkeypatch.setenv("TWIN_LANGUAGE", "klingon")
    assert i18n.default_locale() == "en"


def _twin(*args, language):
    env = {**os.environ, "TWIN_LANGUAGE": language, "TWIN_HOME": "/nonexistent-twin-home"}
    twin = Path(sys.executable).with_name("twin")
    return subprocess.run([str(twin), *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_the_cli_speaks_the_deployments_language(tmp_path):
    # A missing file fails before any database is needed.
    args = ("mapping", "draft", str(tmp_path / "missing.csv"), "--layer", "streets")
    chinese = _twin(*args, language="zh")
    assert chinese.returncode == 2
    assert chinese.stderr.startswith("错误："), chinese.stderr
    assert chinese.stderr.strip().endswith("missing.csv 不存在。"), chinese.stderr
    english = _twin(*args, language="en")
    assert english.returncode == 2
    assert english.stderr.startswith("Error:"), english.stderr
    assert english.stderr.strip().endswith("missing.csv does not exist."), english.stderr
    assert not CJK.search(english.stderr)
