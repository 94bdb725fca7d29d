"""docs/extending.md shows real files: each code block marked ``<!-- the file: PATH -->`` is PATH,
character for character, so the worked examples cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKED = re.compile(r"<!-- the file: (?P<path>\S+) -->\n```python\n(?P<code>.*?)```", re.DOTALL)


def test_every_marked_code_block_is_the_file_it_names():
    text = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    blocks = list(MARKED.finditer(text))
    assert len(blocks) >= 3  # a suite and two backends
    for block in blocks:
        path = ROOT / block["path"]
        assert path.is_file(), block["path"]
        assert block["code"] == path.read_text(encoding="utf-8"), f"docs/extending.md: {block['path']} has changed"
