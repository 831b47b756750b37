"""Caption cleaning: lower-case, strip punctuation, keep at most 30 words."""

from __future__ import annotations

import re

MAX_WORDS = 30
_PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)


def clean_caption(text: str, max_words: int = MAX_WORDS) -> str:
    words = _PUNCTUATION.sub(" ", text.lower()).split()
    return " ".join(words[:max_words])
