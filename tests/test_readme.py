"""The README's Python examples run as written, in order (later blocks continue earlier ones)."""

import re
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_readme_examples_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # what the examples write (runs/...) goes to a temporary folder
    assert len(BLOCKS) >= 5
    namespace: dict = {}
    for index, block in enumerate(BLOCKS):
        exec(compile(block, f"README.md[python block {index}]", "exec"), namespace)
    assert (tmp_path / "runs" / "readme-demo" / "metrics.csv").is_file()
