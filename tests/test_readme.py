"""The README's Python examples run as written, in order (later blocks continue earlier ones), and so do
those of the documentation pages that took over the README's long sections."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
# the pages whose examples continue one another, in reading order (each page's blocks in order)
DOC_PAGES = ["getting_started", "snntorch", "reproducing", "performance"]


def _run_blocks(blocks: list[tuple[str, str]]) -> dict:
    namespace: dict = {}
    for where, block in blocks:
        exec(compile(block, where, "exec"), namespace)
    return namespace


def test_readme_examples_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # what the examples write (runs/...) goes to a temporary folder
    assert len(BLOCKS) >= 3  # BNTT in an snnTorch net, the multi-step model, train()
    _run_blocks([(f"README.md[python block {i}]", block) for i, block in enumerate(BLOCKS)])
    assert (tmp_path / "runs" / "readme-demo" / "metrics.csv").is_file()


def test_the_documentation_examples_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = []
    for page in DOC_PAGES:
        text = (ROOT / "docs" / f"{page}.md").read_text()
        blocks += [
            (f"docs/{page}.md[python block {i}]", b)
            for i, b in enumerate(re.findall(r"```python\n(.*?)```", text, re.S))
        ]
    assert len(blocks) >= 8
    namespace = _run_blocks(blocks)
    assert "graph" in namespace and (tmp_path / "runs" / "readme-ottt" / "metrics.csv").is_file()
