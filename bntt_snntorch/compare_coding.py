"""Deprecated alias of ``python -m bntt_snntorch compare-coding`` (:mod:`bntt_snntorch.commands.compat`)."""

from .commands.compat import alias_module

alias_module("bntt_snntorch.compare_coding", __name__)
