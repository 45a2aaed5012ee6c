"""`python -m keel.generate --prompt ...`: the generate command as a module, and
`from keel.generate import generate` for code written against mlx-lm's layout.

`keel/__init__.py` imports this package before it binds the function `keel.generate`:
importing a submodule binds it as an attribute of its parent only on first load, so a
later `import keel.generate` finds it loaded and leaves `keel.generate` the function.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..api import generate, generate_iter, stream_generate

__all__ = ["generate", "generate_iter", "main", "stream_generate"]


def main(argv: Sequence[str] | None = None) -> None:
    """Generate text for --prompt, streamed to stdout (the `keel generate` options)."""
    from ..cli import generate_module_command

    generate_module_command.main(args=argv, prog_name="python -m keel.generate")
