"""Reading the two-word rules of the configuration ('10.0.0.0/8 allow', 'example. static').

An access-control rule and a local-zone line are both a subject and a keyword from a fixed
set; this module splits such a line and reads the keyword, with the errors saying what was
expected, so that every rule reads and complains alike.
"""

from __future__ import annotations

import enum
from typing import TypeVar

KeywordT = TypeVar("KeywordT", bound=enum.Enum)


def read_two_words(text: str, form: str) -> tuple[str, str]:
    """The two words of `text`; ValueError "`text` is not `form`" for any other count."""
    parts = text.split()
    if len(parts) != 2:
        raise ValueError(f"{text!r} is not {form}")
    return parts[0], parts[1]


def read_keyword(kind: type[KeywordT], word: str, unknown: str) -> KeywordT:
    """The member of `kind` spelt `word` in any case; ValueError "`unknown` (use a, b, ...)"."""
    try:
        return kind(word.lower())
    except ValueError:
        choices = ", ".join(str(member.value) for member in kind)
        raise ValueError(f"{unknown} (use {choices})") from None
