"""Every text residents read from the twin, through the twin's catalogues (``geo/i18n.py``).

The English texts here are the msgids; their Chinese is in
``geo/locale/zh_Hans/LC_MESSAGES/twin.po``. Residents' pages speak Chinese unless asked for
English (``?lang=en``): the county's residents read Chinese, whatever their browser says.
``text(key, lang, **values)`` is the one accessor.
"""

from __future__ import annotations

from geo.i18n import N_, gettext, speaking, use_locale

LANGS = ("zh", "en")
DEFAULT_LANG = "zh"

TEXTS: dict[str, str] = {
    'report.title': N_('Report a problem'),
    'report.intro': N_('A broken streetlight, a collapsed road, a missing manhole cover, '
             'dumped rubbish? Tell us where, with a photo and a few words. No '
             'account needed.'),
    'report.where': N_('Where'),
    'report.pin': N_('Tap the map to place a pin'),
    'report.or_building': N_('or choose my compound'),
    'report.choose': N_('(choose a compound)'),
    'report.what': N_('What is wrong'),
    'report.placeholder': N_('e.g. the streetlight outside gate 2 is broken'),
    'report.photo': N_('Photo (optional, JPEG/PNG/WebP, at most 5 MB)'),
    'report.send': N_('Send'),
    'report.sent': N_('Received. Keep your token:'),
    'report.follow': N_('Follow its progress'),
    'report.other_lang': N_('中文'),
    'report.need_place': N_('Place a pin on the map or choose a compound.'),
    'status.title': N_('Your request'),
    'status.status': N_('Status'),
    'status.open': N_('Being handled'),
    'status.closed': N_('Closed'),
    'status.matter': N_('Kind'),
    'status.party': N_('Responsible'),
    'status.supporters': N_('Supporters of this report'),
    'status.expected': N_('Expected by'),
    'status.history': N_('Progress and replies'),
    'status.reply': N_('Reply'),
    'status.change': N_('Status change'),
    'status.joined': N_('Someone reported this already; your report joined it (+1).'),
    'matter.big': N_('Big matter (a government department)'),
    'matter.small': N_('Small matter (the community)'),
    'matter.private': N_('Private matter (residents themselves)'),
    'council.title': N_("The councils' living list"),
    'council.intro': N_("Residents' requests by compound and responsible party, for the "
             'building, group and community councils.'),
    'council.compound': N_('Compound'),
    'council.party': N_('Responsible party'),
    'council.matter': N_('Matter'),
    'council.status': N_('Status'),
    'council.count': N_('Requests'),
    'council.supporters': N_('Supporters'),
    'council.oldest': N_('Oldest (days)'),
    'council.overdue': N_('Overdue'),
    'council.none': N_('(no compound)'),
    'council.empty': N_('No requests.'),
    'council.items': N_('The requests'),
    'chat.new': N_('Received as a {matter}, number {id}, for {party}; an answer is '
             'expected by {expected}. Progress: {url}'),
    'chat.plus_one': N_('This is being handled already (number {id}); your +1 is counted, '
             '{supporters} supporters now.'),
    'chat.private': N_('This is a private matter ({id}): please call a repair service; the '
             "residents' committee can suggest one."),
}


# The status notes the twin itself writes (stored as English text, like staff's notes); they
# are shown in the reader's language, staff's own words as written.
PRIVATE_NOTE = N_("A private matter (私事): residents solve it themselves or with a market "
                  "service; the residents' committee can refer one.")
RECLASSIFIED = {"big": N_("Reclassified as a big matter."),
                "small": N_("Reclassified as a small matter."),
                "private": N_("Reclassified as a private matter.")}
SETTLED_BY_ALERT = {"resolved": N_("The matter was resolved."),
                    "dismissed": N_("The matter was dismissed.")}
_SYSTEM_NOTES = frozenset((PRIVATE_NOTE, *RECLASSIFIED.values(), *SETTLED_BY_ALERT.values()))


def note_text(note: str | None, lang: str | None = None) -> str | None:
    """A stored status note for a reader: the twin's own in ``lang``, others' as written.

    ``lang`` defaults to the current language.

    >>> note_text("The matter was resolved.", "zh"), note_text("Fixed on Monday.", "zh")
    ('事项已解决。', 'Fixed on Monday.')
    """
    if note not in _SYSTEM_NOTES:
        return note
    with speaking(None if lang is None else lang if lang in LANGS else DEFAULT_LANG):
        return gettext(note)


def text(key: str, lang: str = DEFAULT_LANG, **values: object) -> str:
    """A resident-facing text in ``lang`` (Chinese when the language is not offered).

    >>> text("report.title"), text("report.title", "en")
    ('报告问题', 'Report a problem')
    """
    with use_locale(lang if lang in LANGS else DEFAULT_LANG):
        return gettext(TEXTS[key], **values)


def pick_lang(asked: str | None) -> str:
    """The language to answer in: ``?lang=`` if offered, else Chinese.

    >>> pick_lang("en"), pick_lang(None), pick_lang("fr")
    ('en', 'zh', 'zh')
    """
    return asked if asked in LANGS else DEFAULT_LANG
