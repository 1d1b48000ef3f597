"""Deprecated alias of ``python -m bntt_snntorch analyze`` (:mod:`bntt_snntorch.commands.compat`)."""

from .commands.compat import alias_module

alias_module("bntt_snntorch.analyze", __name__)
