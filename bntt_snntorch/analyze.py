"""Deprecated since 0.2 (removed in the next release): ``python -m bntt_snntorch analyze``."""

from .commands import deprecated_alias

deprecated_alias("bntt_snntorch.analyze", "analyze", __name__)
