"""README's Python examples are run as written, so the documentation stays true."""

import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    runnable = [block for block in blocks if "import keel" in block]
    assert runnable
    for block in runnable:
        exec(compile(block, str(README), "exec"), {})
    assert "fp_" in capsys.readouterr().out
