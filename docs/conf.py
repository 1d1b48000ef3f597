"""Sphinx configuration: MyST pages, the jupytext tutorials executed by myst-nb, autodoc API
reference, argparse CLI reference, offline math (MathJax from the jupyter-server-mathjax wheel)."""

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

# -- tutorials: the jupytext percent scripts themselves, executed in quick mode ----------------
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
nb_execution_mode = os.environ.get("BNTT_DOCS_EXECUTE", "force")
nb_execution_timeout = 900
nb_execution_in_temp = True
nb_execution_raise_on_error = True
os.environ.setdefault("BNTT_TUTORIAL_QUICK", "1")  # full mode: BNTT_TUTORIAL_QUICK=0 sphinx-build ...
os.environ["BNTT_RESULTS_DIR"] = str(ROOT / "results")
os.environ.pop("MPLBACKEND", None)  # the kernels' inline backend puts the tutorials' figures on the pages
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

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
