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


@main.group("cache")
def cache_group() -> None:
    """Inspect or empty the persistent result cache."""


def _cache_or_exit():
    from .cache import result_cache

    store = result_cache()
    if store is None:
        raise click.ClickException("the result cache is disabled (KEEL_CACHE=0)")
    return store


@cache_group.command("path")
def cache_path() -> None:
    """Print where the cache file lives."""
    click.echo(_cache_or_exit().path)


@cache_group.command("stats")
def cache_stats() -> None:
    """Entries, size and hit rate."""
    stats = _cache_or_exit().stats()
    click.echo(f"path      {stats['path']}")
    click.echo(f"entries   {stats['entries']}")
    click.echo(
        f"size      {stats['bytes'] / 2**20:.2f} MiB of {stats['max_bytes'] / 2**20:.0f} MiB"
    )
    click.echo(f"hits      {stats['hits']}")
    click.echo(f"misses    {stats['misses']}")
    click.echo(f"hit rate  {stats['hit_rate']:.1%}")


@cache_group.command("clear")
def cache_clear() -> None:
    """Remove every entry."""
    _cache_or_exit().clear()
    click.echo("cache cleared")


@cache_group.command("prune")
@click.option("--max-mb", type=float, default=None, help="Size to prune to (default: the limit).")
def cache_prune(max_mb: float | None) -> None:
    """Evict the least frecent entries until the cache fits its size limit."""
    limit = None if max_mb is None else int(max_mb * 2**20)
    removed = _cache_or_exit().prune(limit)
    click.echo(f"removed {removed} entries")
