"""Deprecated alias of ``python -m bntt_snntorch convert`` (:mod:`bntt_snntorch._compat`)."""

from ._compat import alias_module

alias_module("bntt_snntorch.convert", __name__)
