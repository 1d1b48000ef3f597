"""Deprecated alias of ``python -m bntt_snntorch compare-conversion`` (:mod:`bntt_snntorch.commands.compat`)."""

from .commands.compat import alias_module

alias_module("bntt_snntorch.compare_conversion", __name__)
