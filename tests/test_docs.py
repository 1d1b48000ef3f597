"""The documentation: every public name in the API reference with a docstring; the Sphinx site
builds with warnings as errors (the tutorials' executed notebooks on its pages), works offline (local MathJax,
local search) and renders its math and figures in a real headless browser; the tutorials' paired notebooks
match their scripts."""

import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

import bntt_snntorch

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SUBPACKAGES = [
    "bntt_snntorch.data",
    "bntt_snntorch.models",
    "bntt_snntorch.analysis",
    "bntt_snntorch.training",
    "bntt_snntorch.experiments",
]


def _public_names():
    for package in ["bntt_snntorch", *SUBPACKAGES]:
        module = importlib.import_module(package)
        for name in module.__all__:
            yield package, name, getattr(module, name)


def test_every_public_name_is_in_the_api_reference_with_a_docstring():
    api = (DOCS / "api.md").read_text()
    listed = set(re.findall(r"^   ([\w.]+)$", api, re.M))
    top_level = {id(getattr(bntt_snntorch, n)) for n in bntt_snntorch.__all__ if n in listed}
    missing, undocumented = [], []
    for package, name, obj in _public_names():
        entry = obj.__name__ if inspect.ismodule(obj) else name
        if entry not in listed and id(obj) not in top_level:  # a re-export of a top-level name is documented there
            missing.append(f"{package}.{name}")
        if (inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj)) and not inspect.getdoc(obj):
            undocumented.append(f"{package}.{name}")
    assert missing == [] and undocumented == []


@pytest.mark.parametrize("script", sorted((ROOT / "tutorials").glob("0*.py")), ids=lambda p: p.stem)
def test_paired_notebook_matches_its_script(script):
    notebook = script.with_suffix(".ipynb")
    assert notebook.exists(), f"run: jupytext --sync {script}"
    ours, paired = jupytext.read(script), jupytext.read(notebook)
    assert [(c.cell_type, c.source) for c in ours.cells] == [(c.cell_type, c.source) for c in paired.cells]
    assert paired.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    code = [c for c in paired.cells if c.cell_type == "code"]
    assert sum(bool(c.outputs) for c in code) >= len(code) // 2, "the notebook keeps its outputs"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("sphinx", reason="the docs extra is not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("docs") / "html"
    res = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "MPLBACKEND"},  # kernels plot inline
    )
    assert res.returncode == 0, res.stderr[-4000:]
    return out


@pytest.mark.slow
@pytest.mark.xdist_group("docs-site")  # one build: the tests that read it run in one worker
def test_site_builds_offline_with_every_page(site):
    pages = [
        "index",
        "getting_started",
        "concepts",
        "snntorch",
        "tutorials",
        "cli",
        "performance",
        "reproducing",
        "api",
    ]
    for page in pages:
        assert (site / f"{page}.html").is_file(), page
    for script in sorted((ROOT / "tutorials").glob("0*.py")):
        html = (site / "tutorials" / f"{script.stem}.html").read_text()
        images = re.findall(r'<img[^>]+src="([^"]+)"', html)
        assert images and all((site / "tutorials" / src).is_file() for src in images), script.stem
    assert (site / "_static" / "MathJax.js").is_file() and (site / "searchindex.js").is_file()
    for html_file in site.rglob("*.html"):
        text = html_file.read_text()
        assert not re.search(r'<script[^>]+src="https?://', text), f"{html_file.name} loads a script from the web"
    cli = (site / "cli.html").read_text()
    assert "--num-steps" in cli and "--job-dir" in cli and "--norm" in cli
    generated = (site / "generated" / "bntt_snntorch.Leaky.html").read_text()
    assert "step_mode" in generated and "init_hidden" in generated


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.xdist_group("docs-site")
@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_pages_render_math_and_figures_in_a_browser(site, tmp_path):
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=15000",
    ]

    def dom(page: Path) -> str:
        res = subprocess.run(
            [_chromium(), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
        )
        return res.stdout

    concepts = dom(site / "concepts.html")
    assert concepts.count('class="MathJax') >= 5, "MathJax did not typeset the equations"
    with_math = [p for p in site.rglob("*.html") if 'class="math' in p.read_text() and "_static" not in p.parts]
    assert site / "concepts.html" in with_math
    for page in with_math:  # every formula of the site typesets: MathJax marks a failure in the page itself
        assert "Math Processing Error" not in dom(page), f"{page.relative_to(site)}: a formula did not typeset"
    for page in (site / "tutorials").glob("0*.html"):  # what a reader sees of the executed notebooks
        text = page.read_text()
        for noise in ("No CUDA runtime is found", "cpp_extension", "DeprecationWarning", "UserWarning"):
            assert noise not in text, f"{page.name} shows {noise!r} in its output"
    tutorial = dom(site / "tutorials" / "06_temporal_normalisation.html")
    assert "<img" in tutorial and "TemporalEffectiveBatchNorm2d" in tutorial
    api = dom(site / "generated" / "bntt_snntorch.BatchNormTT2d.html")
    assert "BatchNormTT2d" in api
    for page, name in (
        ("index.html", "index"),
        ("concepts.html", "concepts"),
        ("tutorials/06_temporal_normalisation.html", "tutorial"),
        ("api.html", "api"),
    ):
        subprocess.run(
            [
                _chromium(),
                *flags,
                f"--screenshot={tmp_path / name}.png",
                "--window-size=1280,1600",
                (site / page).as_uri(),
            ],
            capture_output=True,
            timeout=120,
        )
        assert (tmp_path / f"{name}.png").stat().st_size > 20_000, name
