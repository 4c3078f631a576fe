"""The twin's message catalogues: extract every msgid from the code and merge it into them.

    .venv/bin/python scripts/i18n.py update   # extract, merge into both .po files (sorted)
    .venv/bin/python scripts/i18n.py check    # list msgids without a Chinese or English text

``update`` adds new msgids (English gets its msgid as text; Chinese is left empty for a
translator), drops msgids the code no longer has, and writes both catalogues sorted by msgid
without source locations, so that branches adding messages rarely conflict. It is what
``pybabel extract -F babel.cfg ... && pybabel update ...`` does, with that sorting.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geo.i18n import DOMAIN, LOCALES, SOURCE_LOCALE, catalogue_path  # noqa: E402

# The packages whose code speaks to users (tests and scripts do not).
PACKAGES = ("geo", "ingest", "predict", "maps", "service", "sample_data")
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None, "deferred": None}


def extract() -> Catalog:
    """Every message the code marks (``_``, ``_l``, ``ngettext``, ``N_``...), as a template."""
    with open(ROOT / "babel.cfg") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    template = Catalog(domain=DOMAIN, project="Neighbourhood Twin", fuzzy=False)
    for package in PACKAGES:
        for filename, lineno, message, comments, context in extract_from_dir(
            ROOT / package, method_map, options_map, keywords=KEYWORDS
        ):
            template.add(message, None, [(f"{package}/{filename}", lineno)],
                         auto_comments=comments, context=context)
    return template


def load(locale: str) -> Catalog:
    """The catalogue of ``locale`` as it is on disk (an empty one when there is none yet)."""
    path = catalogue_path(locale)
    if not path.exists():
        return Catalog(locale=locale, domain=DOMAIN, project="Neighbourhood Twin")
    with open(path, "rb") as po:
        return read_po(po, locale=locale, domain=DOMAIN)


def save(catalog: Catalog, locale: str) -> None:
    """Write a catalogue sorted by msgid, without line numbers or obsolete entries."""
    path = catalogue_path(locale)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as po:
        write_po(po, catalog, sort_output=True, no_location=True, omit_header=False,
                 ignore_obsolete=True, width=100)


def missing(catalog: Catalog, template: Catalog) -> list[str]:
    """The msgids of ``template`` that ``catalog`` does not translate (or only fuzzily)."""
    gaps = []
    for message in template:
        if not message.id:
            continue
        entry = catalog.get(message.id, context=message.context)
        texts = entry.string if entry is not None else None
        if isinstance(texts, tuple):
            empty = not all(texts)
        else:
            empty = not texts
        if entry is None or empty or entry.fuzzy:
            gaps.append(message.id if isinstance(message.id, str) else message.id[0])
    return gaps


def update() -> None:
    """Merge the code's msgids into every catalogue."""
    for locale in LOCALES:
        catalog = load(locale)
        # A fresh template for each: Catalog.update adopts the template's message objects.
        template = extract()
        catalog.update(template, no_fuzzy_matching=True, update_header_comment=False,
                       update_creation_date=False)
        catalog.fuzzy = False
        catalog.obsolete.clear()
        if locale == SOURCE_LOCALE:
            for message in catalog:
                texts = message.string if isinstance(message.string, tuple) else (message.string,)
                if message.id and not all(texts):
                    message.string = message.id
        # No source locations: line numbers would change with every edit and conflict.
        for message in catalog:
            message.locations = []
        save(catalog, locale)
        print(f"{catalogue_path(locale).relative_to(ROOT)}: {len(catalog)} messages, "
              f"{len(missing(catalog, template))} without a text")


def check() -> int:
    """Print the msgids a catalogue lacks; 1 when there is any."""
    template = extract()
    status = 0
    for locale in LOCALES:
        for msgid in missing(load(locale), template):
            print(f"{locale}: no text for {msgid!r}")
            status = 1
    return status


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    if command == "update":
        update()
    elif command == "check":
        sys.exit(check())
    else:
        sys.exit(f"unknown command {command!r}: use update or check")
