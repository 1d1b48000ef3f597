"""Sphinx configuration: MyST pages, the tutorials' executed notebooks (myst-nb), autodoc API reference, argparse
CLI reference, offline math (MathJax from the jupyter-server-mathjax wheel)."""

import os
import sys
from pathlib import Path

import jupyter_server_mathjax

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

project = "bntt_snntorch"
author = "bntt_snntorch developers"
copyright = "2026, bntt_snntorch developers"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md", "conf.py"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".py": "myst-nb"}  # .rst first: autosummary's stubs
templates_path = ["_templates"]

# -- tutorials: the executed notebooks paired with the jupytext scripts (full runs, outputs kept) ---------------
# shown as they are (tests/test_tutorials.py runs every script; tests/test_docs.py keeps each notebook paired with
# its script); BNTT_DOCS_EXECUTE=force executes them again (quick mode unless BNTT_TUTORIAL_QUICK=0).
nb_execution_mode = os.environ.get("BNTT_DOCS_EXECUTE", "off")
nb_execution_timeout = 900
nb_execution_in_temp = True
nb_execution_raise_on_error = True
os.environ.setdefault("BNTT_TUTORIAL_QUICK", "1")
os.environ["BNTT_RESULTS_DIR"] = str(ROOT / "results")
os.environ.pop("MPLBACKEND", None)  # the kernels' inline backend puts the tutorials' figures on the pages
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3


# -- CLI reference: one section per command of the registry (bntt_snntorch.commands.COMMANDS) ---
def _write_cli_reference() -> None:
    from bntt_snntorch.commands import COMMANDS

    lines = [
        "# Command-line reference",
        "",
        "Every command runs as `python -m bntt_snntorch <command> [flags]`; `train` is also `python train.py`.",
        "Generated from the command registry and each command's own parser. Flags are spelled with dashes;",
        "the source works' spellings (`--num_steps`, `--T`, `--time`, `--job-dir`, `--data`, `--gpu`, `--norm`,",
        "...) are aliases listed with each flag.",
    ]
    for name, command in COMMANDS.items():
        script = f" (`{command.script}`)" if command.script else ""
        prog = "train.py" if name == "train" else f"python -m bntt_snntorch {name}"
        lines += [
            "",
            f"## {name}{script}",
            "",
            f"{command.summary[0].upper()}{command.summary[1:]}.",
            "",
            "```{eval-rst}",
            ".. argparse::",
            f"   :module: bntt_snntorch.commands.{command.module}",
            "   :func: get_args_parser",
            f"   :prog: {prog}",
            "```",
        ]
    target = Path(__file__).parent / "cli.md"
    text = "\n".join(lines) + "\n"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


_write_cli_reference()

# -- API reference ------------------------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Links in the included README sections point into the repository (results/, benchmarks/);
# they are not pages of this site and stay plain text here.
suppress_warnings = ["myst.header", "myst.xref_missing"]
myst_ref_domains = ["std", "py"]
nitpicky = False

# -- HTML: furo, local search, MathJax served from _static (no CDN) -----------------------------
html_theme = "furo"
html_title = "bntt_snntorch"
html_static_path = ["_static", str(Path(jupyter_server_mathjax.__file__).parent / "static")]
mathjax_path = "MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"  # MathJax 2.7, the configuration that wheel ships
mathjax2_config = {
    "tex2jax": {
        "inlineMath": [["\\(", "\\)"]],
        "displayMath": [["\\[", "\\]"]],
        "processEscapes": True,
        "ignoreClass": "tex2jax_ignore|mathjax_ignore|document",
        "processClass": "tex2jax_process|mathjax_process|math|output_area",
    }
}
