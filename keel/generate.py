"""`python -m keel.generate --prompt ...`: the generate command as a module entry point."""

from __future__ import annotations

import sys
import types

import click

from . import api
from .cli import sampling_options, stream_to_stdout


@click.command()
@click.option("--prompt", required=True, help="The prompt text.")
@sampling_options
def main(prompt: str, **options) -> None:
    """Generate text for --prompt, streamed to stdout."""
    stream_to_stdout(prompt, **options)


class _CallableModule(types.ModuleType):
    """Importing this module rebinds `keel.generate` from the function to the module;
    making the module callable keeps `keel.generate(prompt)` working either way."""

    def __call__(self, *args, **kwargs):
        return api.generate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    main()
