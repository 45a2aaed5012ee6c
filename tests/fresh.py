"""Run keel.generate in a new Python process, for the repeat == fresh process equivalences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_CODE = (
    "import json, sys; sys.path.insert(0, 'tests'); import keel; {setup}; "
    "print(json.dumps(keel.generate(sys.argv[1], **json.loads(sys.argv[2]){extra})))"
)


def generate_in_fresh_process(prompt: str, options: dict, setup: str = "pass", extra: str = ""):
    """keel.generate(prompt, **options, <extra>) after `setup`, in a new interpreter run from
    the repository root; `extra` may name what `setup` imported (e.g. ", schema=Product")."""
    out = subprocess.run(
        [sys.executable, "-c", _CODE.format(setup=setup, extra=extra), prompt, json.dumps(options)],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
        cwd=Path(__file__).parents[1],
    )
    return json.loads(out.stdout)
