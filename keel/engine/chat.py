"""Rendering a prompt through the model's own chat template (the GGUF's Jinja source).

Using the template exactly as the model ships it (including any default system prompt)
is what makes keel's chat prompts match other runtimes that render the same template.
"""

from __future__ import annotations

import datetime
from functools import lru_cache

from jinja2 import Template
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import InvalidParameterError


def _raise(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    # Fixed date: a template that asks for "now" must not make the output time-dependent.
    return datetime.date(2025, 1, 1).strftime(fmt)


@lru_cache(maxsize=8)
def _compile(source: str) -> Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals.update(raise_exception=_raise, strftime_now=_strftime_now)
    return env.from_string(source)


def render_chat(source: str, messages: list[dict[str, str]], bos_token: str, eos_token: str) -> str:
    try:
        rendered: str = _compile(source).render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=bos_token,
            eos_token=eos_token,
        )
        return rendered
    except TemplateError as exc:
        message = f"the model's chat template rejected the prompt: {exc}"
        raise InvalidParameterError(message) from exc
