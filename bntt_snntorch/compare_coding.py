"""Deprecated since 0.2 (removed in the next release): ``python -m bntt_snntorch compare-coding``."""

from .commands import deprecated_alias

deprecated_alias("bntt_snntorch.compare_coding", "compare-coding", __name__)
