"""The twin's languages: Simplified Chinese and English, through Babel's message catalogues.

Every user-facing text (pages, legends, popups, alert texts, problem details, CLI messages) is
written in English in the code and looked up at render time in the catalogue of the current
locale: ``geo/locale/<locale>/LC_MESSAGES/twin.po``, one domain (``twin``), one file per
locale (``zh_Hans`` and ``en``), entries sorted by msgid. The ``.po`` files are compiled in
memory on first use, so a fresh clone needs no build step.

The current locale is a context variable: the service sets it per request (``?lang=``, then
``Accept-Language``, then ``TWIN_LANGUAGE``), the ``twin`` command once per run (from
``TWIN_LANGUAGE``). ``TWIN_LANGUAGE`` is the deployment's default: English when unset; the demo
and the sample deployment set Chinese. Code that runs outside both (a background job) speaks
the source language, English, unless it calls :func:`use_locale`.

How to add a message
--------------------
1. Wrap the English text where it is shown, with named ``{placeholders}`` for values::

       from geo.i18n import _, _l, ngettext

       print(_("Loaded {count} rows into {layer}.", count=n, layer=name))
       LEGEND_TITLE = _l("Open alerts")       # module-level constant: a lazy string
       ngettext("{n} alert", "{n} alerts", n)  # plural forms; ``n`` is passed to format

   Without values the text is returned as it is; with values, write a literal brace as
   ``{{`` or pass it in a value. Do not build a message from pieces
   (``_("Open") + " " + _("alerts")``): Chinese orders words differently; translate the
   whole sentence. Values (names, ids, numbers) go in
   placeholders, formatted with :func:`format_decimal` / :func:`format_date` /
   :func:`format_datetime` so that they follow the locale too.
2. Run ``.venv/bin/python scripts/i18n.py update``: it extracts every msgid from the code
   (Babel's extractor, with ``babel.cfg``) and merges them into both ``.po`` files, sorted,
   without line numbers (so that parallel branches rarely conflict).
3. Fill in ``msgstr`` in ``geo/locale/zh_Hans/LC_MESSAGES/twin.po`` (the Chinese) and in
   ``geo/locale/en/LC_MESSAGES/twin.po`` (usually the msgid itself; the English catalogue
   lets wording change without touching code). Keep every ``{placeholder}``.
4. ``pytest tests/geo/test_i18n.py`` fails while any msgid lacks either translation, is fuzzy,
   or loses a placeholder.

Texts kept in the database (an alert's reason) are kept as a *message*, not in one language:
``deferred("...{value}...", value=...)`` is a JSON-able ``{"msgid": ..., "values": ...}``
(values may be messages too, and ``{"date": "YYYY-MM-DD"}`` is a date), and
:func:`render` writes it in the language of whoever reads it.

Lazy strings (``_l``) are :class:`babel.support.LazyProxy` objects, translated each time they
are turned into text (``str()``, f-strings, ``%``, ``+``, string methods); pass ``str(x)`` where
a real ``str`` is needed (``json.dumps``, Jinja's ``tojson``, ``isinstance`` checks).

Examples
--------
>>> with use_locale("zh"):
...     _("Error:")
'错误：'
>>> with use_locale("en"):
...     _("Error:")
'Error:'
>>> with use_locale("zh"):
...     format_decimal(1234.5)
'1,234.5'
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import date, datetime, tzinfo
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, cast

from babel import Locale, dates, numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import LazyProxy, Translations
from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DOMAIN = "twin"
LOCALE_DIR = Path(__file__).parent / "locale"
# The catalogues there, by Babel locale identifier; the first is the source language.
LOCALES = ("en", "zh_Hans")
SOURCE_LOCALE = "en"
# Language subtags (BCP 47 or POSIX) -> our locale. Any Chinese gets Simplified Chinese: the
# only written Chinese the twin has, and closer to a Traditional reader than English is.
_LANGUAGES = {"en": "en", "zh": "zh_Hans"}

_current: ContextVar[str | None] = ContextVar("twin_locale", default=None)


class LanguageSettings(BaseSettings):
    """The deployment's language and clock.

    ``TWIN_LANGUAGE`` (``zh`` or ``en``; default English), and ``TWIN_TIMEZONE`` (an IANA
    zone such as ``Asia/Shanghai``; default UTC): the zone residents' pages and messages
    give times in, since residents read their own clock and the database keeps UTC.
    """

    model_config = SettingsConfigDict(env_prefix="TWIN_", extra="ignore")

    language: str = SOURCE_LOCALE
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            dates.get_timezone(value)
        except LookupError:
            raise ValueError(f"TWIN_TIMEZONE '{value[:60]}' is not a time zone name such as "
                             f"Asia/Shanghai or UTC.") from None
        return value


def local_zone() -> tzinfo:
    """The deployment's time zone (``TWIN_TIMEZONE``), read on each call."""
    return dates.get_timezone(LanguageSettings().timezone)


def resolve(tag: str | None) -> str | None:
    """Our locale for a language tag (``zh-CN``, ``zh_Hans``, ``en-GB``...), or None.

    Examples
    --------
    >>> resolve("zh-CN"), resolve("zh_Hans"), resolve("EN-gb"), resolve("fr"), resolve("")
    ('zh_Hans', 'zh_Hans', 'en', None, None)
    """
    if not tag:
        return None
    language = re.split(r"[-_]", tag.strip(), maxsplit=1)[0].lower()
    return _LANGUAGES.get(language)


def parse_accept_language(header: str | None) -> list[str]:
    """The tags of an ``Accept-Language`` header, most wanted first (q=0 dropped).

    Examples
    --------
    >>> parse_accept_language("en;q=0.5, zh-CN, fr;q=0.8, de;q=0")
    ['zh-CN', 'fr', 'en']
    """
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate((header or "").split(",")):
        tag, _sep, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        quality = 1.0
        match = re.search(r"q\s*=\s*([0-9.]+)", params)
        if match:
            try:
                quality = float(match.group(1))
            except ValueError:
                quality = 0.0
        if quality > 0:
            weighted.append((-quality, position, tag))
    return [tag for _q, _p, tag in sorted(weighted)]


def negotiate(
    lang: str | None = None, accept_language: str | None = None, default: str | None = None
) -> str:
    """The locale for a request: ``?lang=`` first, then ``Accept-Language``, then the default.

    A ``lang`` the twin does not speak is ignored, as is an unknown default (English then).

    Examples
    --------
    >>> negotiate("en", "zh-CN", "zh")
    'en'
    >>> negotiate(None, "fr, zh-TW;q=0.9, en;q=0.8", "en")
    'zh_Hans'
    >>> negotiate(None, None, "zh")
    'zh_Hans'
    """
    chosen = resolve(lang)
    if chosen:
        return chosen
    for tag in parse_accept_language(accept_language):
        chosen = resolve(tag)
        if chosen:
            return chosen
    return resolve(default) or SOURCE_LOCALE


def default_locale() -> str:
    """The deployment's locale, from ``TWIN_LANGUAGE`` (read on each call: no import-time state)."""
    return resolve(LanguageSettings().language) or SOURCE_LOCALE


def current_locale() -> str:
    """The locale of this request or run (English when nothing has set one)."""
    return _current.get() or SOURCE_LOCALE


def babel_locale() -> Locale:
    """The current locale as a :class:`babel.Locale` (for Babel's own formatters)."""
    return _babel_locale(current_locale())


def set_locale(tag: str | None) -> Token[str | None]:
    """Make ``tag``'s locale current in this context; returns a token for :func:`reset_locale`."""
    return _current.set(resolve(tag) or SOURCE_LOCALE)


def reset_locale(token: Token[str | None]) -> None:
    """Restore the locale that was current before :func:`set_locale` returned ``token``."""
    _current.reset(token)


@contextmanager
def use_locale(tag: str | None) -> Iterator[str]:
    """Speak ``tag``'s language inside the ``with`` block; yields the locale used."""
    token = set_locale(tag)
    try:
        yield current_locale()
    finally:
        reset_locale(token)


@contextmanager
def speaking(tag: str | None) -> Iterator[str]:
    """Speak ``tag``'s language in the block; ``None`` keeps the current one.

    Unlike ``use_locale(None)``, which speaks the deployment's language, a request's own
    language stays when no language is asked for.
    """
    if tag is None:
        yield current_locale()
        return
    with use_locale(tag) as locale:
        yield locale


@cache
def _babel_locale(locale: str) -> Locale:
    return Locale.parse(locale)


@cache
def translations(locale: str) -> Translations:
    """The compiled catalogue of ``locale`` (compiled in memory from its ``.po`` once)."""
    with open(catalogue_path(locale), "rb") as po:
        catalog = read_po(po, locale=locale, domain=DOMAIN)
    mo = io.BytesIO()
    # Fuzzy entries are not used: a guess is shown as the English source instead.
    write_mo(mo, catalog, use_fuzzy=False)
    mo.seek(0)
    return Translations(mo, domain=DOMAIN)


def catalogue_path(locale: str) -> Path:
    """Where the ``.po`` catalogue of ``locale`` is."""
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def _format(text: str, values: dict[str, Any]) -> str:
    return text.format(**values) if values else text


def gettext(message: str, /, **values: Any) -> str:
    """``message`` in the current locale, with ``{placeholders}`` filled from ``values``."""
    if not isinstance(message, str):  # a lazy string: it is already in the current locale
        return _format(str(message), values)
    return _format(translations(current_locale()).ugettext(message), values)


_ = gettext


def ngettext(singular: str, plural: str, n: int, /, **values: Any) -> str:
    """The singular or plural of a message for ``n`` in the current locale; ``{n}`` is filled."""
    text = translations(current_locale()).ungettext(singular, plural, n)
    return _format(text, {"n": format_decimal(n), **values})


def lazy_gettext(message: str, /, **values: Any) -> str:
    """A string translated each time it is used: for module-level constants.

    Typed as ``str`` because it acts as one wherever text is used (formatting, ``+``,
    ``html.escape``, string methods); only ``json.dumps`` and Jinja's ``tojson`` need
    ``str(x)`` first (``maps.elements.js_value`` does that).
    """
    return cast(str, LazyProxy(gettext, message, enable_cache=False, **values))


_l = lazy_gettext


Message = dict[str, Any]


def deferred(message: str, /, **values: Any) -> Message:
    """A message to keep (in JSON) and write later, in its reader's language, with :func:`render`.

    Examples
    --------
    >>> reason = deferred("Why: {reason}", reason=deferred("this alert"))
    >>> with use_locale("zh"):
    ...     render(reason)
    '原因：此告警'
    """
    return {"msgid": message, "values": values}


def render(message: Message | str | None) -> str:
    """A :func:`deferred` message (or plain text, as it is) in the current locale."""
    if not isinstance(message, dict):
        return "" if message is None else str(message)
    if "date" in message and len(message) == 1:
        try:
            return format_date(date.fromisoformat(str(message["date"])[:10]))
        except ValueError:
            return str(message["date"])
    values = {k: render(v) if isinstance(v, dict) else v
              for k, v in (message.get("values") or {}).items()}
    return gettext(str(message.get("msgid", "")), **values)


def N_(message: str) -> str:  # noqa: N802 - the gettext convention
    """Mark ``message`` for extraction without translating it (translate later with ``_``)."""
    return message


def format_decimal(number: float | int | Decimal, format: str | None = None) -> str:
    """A number in the current locale's notation (grouping and decimal signs)."""
    return numbers.format_decimal(number, format=format, locale=babel_locale())


def format_percent(number: float | int | Decimal, format: str | None = None) -> str:
    """A fraction as a percentage in the current locale (``0.25`` -> ``25%``)."""
    return numbers.format_percent(number, format=format, locale=babel_locale())


def format_date(value: date | datetime, format: str = "medium") -> str:
    """A date in the current locale (``format``: short, medium, long, full or a pattern)."""
    return dates.format_date(value, format=format, locale=babel_locale())


def format_datetime(
    value: datetime, format: str = "minute", tz: tzinfo | str | None = None
) -> str:
    """A date and time in the current locale, in ``tz`` (the value's own zone when None).

    ``format`` is ``minute`` (the date, and the time to the minute on a 24-hour clock: what
    crews and planners read), or Babel's short, medium, long, full or a pattern. A naive
    ``value`` is taken as UTC, as the twin stores times.

    Examples
    --------
    >>> when = datetime(2026, 10, 30, 8, 15)
    >>> with use_locale("en"):
    ...     format_datetime(when)
    'Oct 30, 2026 08:15'
    >>> with use_locale("zh"):
    ...     format_datetime(when)
    '2026年10月30日 08:15'
    """
    if tz is None and value.tzinfo is not None:
        tz = value.tzinfo
    zone = dates.get_timezone(tz) if isinstance(tz, str) else tz
    if format == "minute":
        # CLDR has date and time skeletons apart: the locale's own date, then its 24 h time.
        when = value if value.tzinfo is not None else value.replace(tzinfo=dates.UTC)
        if zone is not None:
            when = when.astimezone(zone)
        locale = babel_locale()
        return (dates.format_skeleton("yMMMd", when, locale=locale) + " "
                + dates.format_skeleton("Hm", when, locale=locale))
    return dates.format_datetime(value, format=format, tzinfo=zone, locale=babel_locale())


def language_name(locale: str | None = None) -> str:
    """The name of ``locale`` (the current one by default) in its own language: 中文, English."""
    return _babel_locale(locale or current_locale()).get_display_name() or ""


def html_lang(locale: str | None = None) -> str:
    """The BCP 47 tag for an HTML ``lang`` attribute or ``Content-Language``: zh-Hans, en."""
    return (locale or current_locale()).replace("_", "-")
