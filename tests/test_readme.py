"""README's Python examples are run as written, so the documentation stays true."""

import re
from pathlib import Path

from keel.cache import configure_cache

README = Path(__file__).parent.parent / "README.md"


def test_readme_python_blocks_run(capsys, tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    runnable = [block for block in blocks if "import keel" in block]
    assert len(runnable) >= 3
    configure_cache(enabled=True, directory=tmp_path)  # the cache example needs a cache
    try:
        for block in runnable:
            exec(compile(block, str(README), "exec"), {})
    finally:
        configure_cache(reset=True)
    assert "fp_" in capsys.readouterr().out
