"""Free text with contact details and card numbers taken out, before it is kept or sent.

Chat and feedback text reaches alert excerpts (``crm.alerts``), the customer's history in
their profile (the support page), trigger attributes and the sentiment model's kept
texts. :func:`redact` replaces, in one pass of one compiled regular expression:

* e-mail addresses with ``[email]``;
* runs of 13 to 19 digits (spaces or dashes between them allowed) that pass the Luhn
  check, as payment card numbers do, with ``[card]``;
* other runs of 7 to 15 digits written as phone numbers are (``+``, spaces, dots, dashes,
  brackets between them) with ``[phone]``; ISO dates (``2026-05-01``) are left alone.

It errs on the side of removing: a long order number written like a phone number goes too.
"""

from __future__ import annotations

import re

EMAIL = "[email]"
CARD = "[card]"
PHONE = "[phone]"

# Each branch may start only where a token starts (the lookbehinds), and a local part is
# read once (possessive): linear in the text, whatever it holds.
_PII = re.compile(
    r"(?P<email>(?<![A-Za-z0-9._%+'-])[A-Za-z0-9._%+'-]++@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
    r"|(?P<number>(?<![\w+])(?:\+|\()?\d(?:[ ().-]{0,2}\d){6,22})(?![\w@])"
)
#: Texts without ``@`` and without a run of 7 digits (separators allowed) are returned as
#: they are, after one cheap scan.
_HINT = re.compile(r"@|\d(?:[ ().-]{0,2}\d){6}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}(?::\d{2}){1,2})?")
_NOT_DIGIT = re.compile(r"\D")


def luhn(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (as card numbers do).

    Examples
    --------
    >>> luhn("4111111111111111"), luhn("4111111111111112")
    (True, False)
    """
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _replace(match: re.Match[str]) -> str:
    if match.lastgroup == "email":
        return EMAIL
    text = match.group()
    digits = _NOT_DIGIT.sub("", text)
    count = len(digits)
    if 13 <= count <= 19 and luhn(digits):
        return CARD
    if 7 <= count <= 15 and not _DATE.fullmatch(text):
        return PHONE
    return text


def redact(text: str) -> str:
    """``text`` with e-mail addresses, card numbers and phone numbers replaced.

    Examples
    --------
    >>> redact("Mail ann.lee@example.com or call +44 20 7946 0958 today")
    'Mail [email] or call [phone] today'
    >>> redact("my card 4111 1111 1111 1111 was charged twice on 2026-05-01")
    'my card [card] was charged twice on 2026-05-01'
    >>> redact("order 42 of 19.99 USD")
    'order 42 of 19.99 USD'
    """
    if _HINT.search(text) is None:
        return text
    return _PII.sub(_replace, text)
