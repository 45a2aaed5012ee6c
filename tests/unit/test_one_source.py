"""Every generation parameter's default and doc live in keel.params.PARAMETERS; the
surfaces take theirs from it, and these tests hold them to it."""

import inspect
from pathlib import Path

import click
import pytest

import keel
from keel import cli
from keel.params import DEFAULT_MAX_NEW_TOKENS, PARAMETERS, markdown_table
from keel.server.schemas import CompletionRequest, GenerateRequest

README = Path(__file__).parents[2] / "README.md"
FUNCTIONS = [keel.generate, keel.generate_iter]


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
def test_signature_defaults_come_from_the_table(function):
    for name, parameter in inspect.signature(function).parameters.items():
        if name in PARAMETERS and parameter.default is not inspect.Parameter.empty:
            assert parameter.default == PARAMETERS[name].default, name


def test_generate_takes_every_parameter_and_documents_it():
    accepted = set(inspect.signature(keel.generate).parameters)
    assert accepted == set(PARAMETERS)
    for name in PARAMETERS:
        assert f"    {name}: " in keel.generate.__doc__


def test_cli_options_come_from_the_table():
    options = {p.name: p for p in cli.generate_command.params}
    checked = 0
    for name, spec in PARAMETERS.items():
        option = options.get(name)
        if option is None or not isinstance(option, click.Option):
            continue
        if option.multiple or option.is_flag:
            continue
        expected = DEFAULT_MAX_NEW_TOKENS if name == "max_new_tokens" else spec.default
        assert option.default == expected, name
        checked += 1
    assert checked >= 10


def test_request_models_take_the_library_defaults():
    aliases = {"json_schema": "schema"}
    for field_name, field in GenerateRequest.model_fields.items():
        name = aliases.get(field_name, field_name)
        if name in PARAMETERS and not field.is_required():
            assert field.default == PARAMETERS[name].default, name
    for name in ("temperature", "top_p", "seed"):
        assert CompletionRequest.model_fields[name].default == PARAMETERS[name].default


def test_readme_table_is_rendered_from_the_table():
    expected = markdown_table()
    assert expected in README.read_text(), f"README's parameter table should be:\n{expected}"
