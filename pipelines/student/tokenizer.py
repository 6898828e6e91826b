"""The students' word tokeniser: a pure-Python regex that reproduces the spaCy-English / PTB token boundaries of
the transfer set (contractions split as "do n't", "it 's"; hyphens and punctuation separate; `MASK_SYMBOL`
atomic).

`predict.py` beside this file carries a verbatim copy of `Tokenizer` (it must run without this project), so the
class may only use `re`; tests/pipelines/test_export.py keeps the two copies equal.
"""

from __future__ import annotations

import re

from augment import MASK_SYMBOL


class Tokenizer:
    """Lower-cased (optionally) PTB/spaCy-style word tokeniser.

    Text is split on whitespace, then each chunk by one regex, so `tokenize(text)` is the concatenation of
    `chunk(c)` over `text.split()` (which lets a corpus be tokenised one distinct chunk at a time).
    >>> Tokenizer()("Don't panic: it's well-made ⟨mask⟩'s")
    ['do', "n't", 'panic', ':', 'it', "'s", 'well', '-', 'made', '⟨mask⟩', "'s"]
    """

    # Contraction suffixes spaCy and the PTB split off ("it's" -> "it" "'s"; "don't" -> "do" "n't").
    SUFFIX = r"'(?:s|m|d|re|ve|ll)\b"
    PATTERN = "|".join([
        re.escape(MASK_SYMBOL),  # the transfer set's mask symbol: one token, even when glued to a neighbour
        r"\.\.\.+|--+|``|''",  # multi-character punctuation the PTB keeps whole
        r"\b(?:mr|mrs|ms|dr|st|vs|jr|sr|etc|inc|ltd|co)\.",  # a few abbreviations spaCy keeps with their period
        r"(?:[^\W\d_]\.){2,}",  # initialisms: u.s., e.t.
        r"\d+(?:[.,:]\d+)+",  # numbers: 1.5, 3,000, 10:30
        r"\w+?(?=n't\b)",  # the stem before n't: do|n't, ca|n't, wo|n't
        r"n't\b",
        r"\w+(?='(?:s|m|d|re|ve|ll)\b)",  # the stem before 's 'm 'd 're 've 'll
        SUFFIX,
        r"\w+(?:'(?!(?:s|m|d|re|ve|ll)\b)\w+)*",  # words, with inner apostrophes that are no suffix (o'clock)
        r"\S",  # any other character on its own: punctuation, hyphens, slashes, symbols
    ])

    def __init__(self, lowercase: bool = True):
        self.lowercase = lowercase
        self._re = re.compile(self.PATTERN, re.IGNORECASE)

    def chunk(self, chunk: str) -> list[str]:
        """Tokens of one whitespace-free chunk (or of any text: it is split on whitespace by the regex too)."""
        if self.lowercase:
            chunk = chunk.lower()
        return self._re.findall(chunk.replace("\u2019", "'"))

    def __call__(self, text: str) -> list[str]:
        out: list[str] = []
        for c in text.split():
            out.extend(self.chunk(c))
        return out

    def to_dict(self) -> dict:
        return {"kind": "regex-ptb", "lowercase": self.lowercase}
