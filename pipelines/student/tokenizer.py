"""The students' word tokeniser: a pure-Python regex that reproduces the spaCy-English / PTB token boundaries of
the transfer set (contractions split as "do n't", "it 's"; hyphens and punctuation separate; `MASK_SYMBOL`
atomic).

The class is defined in `predict.py` beside this file, the stand-alone program copied into every student
directory (it must run without this project, so the class uses only `re`); training imports it from there, so a
served student tokenises exactly as it was trained. tests/pipelines/test_export.py checks that predict.py's
mask symbol is the transfer set's.
"""

from __future__ import annotations

from .predict import Tokenizer

__all__ = ["Tokenizer"]
