"""What text the twin stores: no control characters, valid Unicode, a length limit per field.

PostgreSQL refuses NUL in text (the statement fails, which the service would answer with 500)
and XML 1.0 cannot carry most control characters (an Open311 XML answer would be unreadable),
so both are refused where text comes in, with one sentence naming the field. Free text
(descriptions, notes) may hold newlines and tabs; one-line fields (names, codes, addresses,
URLs, tokens) may not.
"""

from __future__ import annotations

import re

from geo.errors import InvalidInput
from geo.i18n import _, format_decimal

# C0 controls, DEL and C1 controls; free text keeps tab, newline and carriage return.
_LINE_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_FREE_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SHOWN_CHARS = 60


def shown(name: str) -> str:
    r"""A field name or value safe to repeat in a message: controls made visible, cut short.

    >>> print(shown("attribute[a\x00b]"))
    attribute[a\x00b]
    """
    text = _LINE_CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", name)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def check_text(value: str, field: str, *, max_chars: int, free_text: bool = False) -> str:
    r"""``value`` unchanged once it holds no control character, is valid Unicode and fits.

    Parameters
    ----------
    value : str
        The text as received.
    field : str
        Its name, for the message.
    max_chars : int
        The most characters the field may hold.
    free_text : bool
        Whether newlines and tabs are allowed (descriptions, notes).

    Raises
    ------
    InvalidInput
        With one sentence naming the field.

    Examples
    --------
    >>> check_text("cover reseated\n", "note", max_chars=10, free_text=True)
    Traceback (most recent call last):
    ...
    geo.errors.InvalidInput: note is 15 characters; at most 10 are allowed.
    >>> check_text("Gate\x00 3", "name", max_chars=200)
    Traceback (most recent call last):
    ...
    geo.errors.InvalidInput: name holds a control character (U+0000), which is not allowed.
    """
    found = (_FREE_CONTROLS if free_text else _LINE_CONTROLS).search(value)
    if found:
        raise InvalidInput(_("{field} holds a control character ({code}), which is not "
                             "allowed.", field=shown(field),
                             code=f"U+{ord(found.group()):04X}"))
    if len(value) > max_chars:
        raise InvalidInput(_("{field} is {length} characters; at most {most} are allowed.",
                             field=shown(field), length=format_decimal(len(value)),
                             most=format_decimal(max_chars)))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(_("{field} is not valid Unicode text.",
                             field=shown(field))) from None
    return value
