r"""Residents' personal numbers and addresses masked in text the twin publishes.

Residents type phone numbers, e-mail addresses and ID-card numbers into any free text of a
request (its description, its address: "near gate, tel 13700001111"), and staff into status
notes. :func:`mask_personal` is the one place they are masked, for every public text field.

The patterns are ASCII-bounded on purpose: ``\w`` would count Chinese characters as word
characters, so "电话13700001111" (no space) would slip through a ``\b`` or ``\w`` boundary.
A run of digits is taken for a phone number when it holds 9 digits or more (a mobile has 11,
a landline with its area code 10 to 12, international forms more), so that dates
("2026-01-15", 8 digits), house numbers and counts stay readable.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# Resident ID card (居民身份证): 6-digit region, birth date, 3-digit sequence, check digit or X.
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])\d{6}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])"
                      r"(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![0-9A-Za-z])")
# Digits with the separators people write in phone numbers: "+86 137-0000-1111",
# "(0916) 321 2345", "0086 13700001111", "+1 (555) 010-9999".
_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?:\+|00)?\(?\d[\d\s().-]{6,}\d(?![0-9A-Za-z])")
_PHONE_MIN_DIGITS = 9

PHONE_MASK, EMAIL_MASK, ID_MASK = "[phone removed]", "[e-mail removed]", "[ID number removed]"


def _phone(match: re.Match) -> str:
    text = match.group()
    digits = sum(c.isdigit() for c in text)
    return PHONE_MASK if digits >= _PHONE_MIN_DIGITS else text


def mask_personal(text: str | None) -> str | None:
    """``text`` with phone numbers, e-mail addresses and ID-card numbers masked.

    Examples
    --------
    >>> mask_personal("near gate, tel 13700001111")
    'near gate, tel [phone removed]'
    >>> mask_personal("电话13700001111，邮箱li@example.cn")
    '电话[phone removed]，邮箱[e-mail removed]'
    >>> mask_personal("ID 61092419800101123X; office (0916) 321-2345; +1 555 010 9999")
    'ID [ID number removed]; office [phone removed]; [phone removed]'
    >>> mask_personal("pile since 2026-01-15 at No. 12, 3 bags")
    'pile since 2026-01-15 at No. 12, 3 bags'
    """
    if not text:
        return text
    text = _EMAIL.sub(EMAIL_MASK, text)
    text = _ID_CARD.sub(ID_MASK, text)
    return _NUMBER.sub(_phone, text)
