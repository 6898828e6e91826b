"""Moved to pipelines/hub.py (used by teacher/ and student/ alike); kept until every importer names it there."""

from ..hub import *  # noqa: F401,F403
