"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path


def test_readme_engine_example_runs(capsys):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    exec(compile(example, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    # 1 s of speech is 7 latent frames: chunks 0..2, 9 frames then 12, at 25 fps
    assert lines == [
        "0 (1, 9, 128, 128, 3) 0.00s",
        "1 (1, 12, 128, 128, 3) 0.36s",
        "2 (1, 12, 128, 128, 3) 0.84s",
    ]
