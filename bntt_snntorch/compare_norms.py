"""Deprecated since 0.2 (removed in the next release): ``python -m bntt_snntorch compare-norms``."""

from .commands import deprecated_alias

deprecated_alias("bntt_snntorch.compare_norms", "compare-norms", __name__)
