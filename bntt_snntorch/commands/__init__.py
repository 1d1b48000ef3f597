"""The command tier: each module is one command line over a Python function of the tiers below.

``train`` (``train.py``, ``bntt-train``), ``convert`` (``train.py convert``, ``bntt-convert``),
``analyze``, ``compare_coding``, ``compare_conversion``; each has ``get_args_parser()``,
``main(args)`` and ``run(argv) -> exit status``.
"""
