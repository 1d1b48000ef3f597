"""Deprecated since 0.2 (removed in the next release): ``python -m bntt_snntorch convert``."""

from .commands import deprecated_alias

deprecated_alias("bntt_snntorch.convert", "convert", __name__)
