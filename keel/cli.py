"""The `keel` command line."""

from __future__ import annotations

import sys

import click

from .api import stream_generate
from .errors import KeelError
from .params import DEFAULT_SEED, EOS_MARKER


def sampling_options(command):
    """Options shared by `keel generate` and `python -m keel.generate`."""
    options = [
        click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True),
        click.option("--temperature", type=float, default=0.0, show_default=True),
        click.option("--top-k", type=int, default=0, show_default=True),
        click.option("--top-p", type=float, default=1.0, show_default=True),
        click.option("--min-p", type=float, default=0.0, show_default=True),
        click.option("--max-new-tokens", type=int, default=512, show_default=True),
        click.option("--eos-string", default=EOS_MARKER, show_default=True),
        click.option("--stop", multiple=True, help="Stop string (repeatable)."),
        click.option("--model", default=None, help="Registry name or .gguf path."),
        click.option("--size", default=None, help="mini, small or large."),
        click.option("--raw", is_flag=True, help="Skip the chat template."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def stream_to_stdout(prompt: str, **options) -> None:
    """Print pieces as they arrive; a keel error becomes one line on stderr, exit 1."""
    options["stop"] = list(options["stop"]) or None
    try:
        for event in stream_generate(prompt, **options):
            if event.finish_reason == "error":
                raise KeelError(event.error)
            sys.stdout.write(event.text)
            sys.stdout.flush()
    except (KeelError, NotImplementedError) as exc:
        raise click.ClickException(str(exc)) from exc
    sys.stdout.write("\n")


@click.group()
@click.version_option(package_name="keel-text")
def main() -> None:
    """keel: deterministic text generation with local GGUF models."""


@main.command("generate")
@click.argument("prompt")
@sampling_options
def generate_command(prompt: str, **options) -> None:
    """Generate text for PROMPT, streamed to stdout."""
    stream_to_stdout(prompt, **options)
