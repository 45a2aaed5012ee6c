"""The caps keel adds to the schema it compiles: only where sizes are open, never below a
minimum the schema sets, and overridable with "x-keel"."""

import jsonschema
import pytest

from keel.errors import InvalidConstraintError
from keel.structured.bounds import Bounds, bounded_schema


def test_open_sizes_get_caps():
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "price": {"type": "number"},
            "count": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "price"],
    }
    compiled, bounds = bounded_schema(schema)
    props = compiled["properties"]
    assert compiled["additionalProperties"] is False
    assert props["name"]["maxLength"] == bounds.max_string_length
    assert props["price"]["multipleOf"] == 10.0**-bounds.fraction_digits
    assert props["price"]["maximum"] == 10**bounds.integer_digits - 1 == -props["price"]["minimum"]
    assert props["count"]["minimum"] == 0 and props["count"]["maximum"] == 10**9 - 1
    assert props["tags"]["maxItems"] == bounds.max_items
    assert props["tags"]["items"]["maxLength"] == bounds.max_string_length
    assert "maxLength" not in schema["properties"]["name"]  # the caller's schema is untouched


def test_what_the_schema_says_is_kept_and_minimums_win():
    schema = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "maxLength": 500},
            "essay": {"type": "string", "minLength": 100},
            "level": {"enum": ["a", "b"]},
            "many": {"type": "array", "minItems": 10},
            "big": {"type": "integer", "minimum": 10**12},
        },
        "additionalProperties": True,
    }
    compiled, _ = bounded_schema(schema)
    props = compiled["properties"]
    assert props["code"]["maxLength"] == 500
    assert props["essay"]["maxLength"] == 100
    assert props["level"] == {"enum": ["a", "b"]}
    assert props["many"]["maxItems"] == 10
    assert props["big"]["maximum"] == 10**12 and "exclusiveMinimum" not in props["big"]
    assert compiled["additionalProperties"] != False  # noqa: E712 (the schema allowed more)


def test_free_values_are_capped_and_end_at_max_depth():
    compiled, bounds = bounded_schema({"type": "object"})
    assert compiled["maxProperties"] == bounds.max_properties
    value = compiled["additionalProperties"]
    depth = 0
    while True:
        kinds = {option["type"] for option in value["anyOf"]}
        if "object" not in kinds:
            break
        value = next(o for o in value["anyOf"] if o["type"] == "array")["items"]
        depth += 1
    assert depth == bounds.max_depth - 1


def test_outputs_of_the_compiled_schema_validate_against_the_callers():
    schema = {
        "type": "object",
        "properties": {"n": {"type": "number", "exclusiveMinimum": 0}, "s": {"type": "string"}},
        "required": ["n", "s"],
    }
    compiled, _ = bounded_schema(schema)
    for value in ({"n": 0.0001, "s": ""}, {"n": 999999999, "s": "x" * 48}):
        jsonschema.validate(value, compiled)
        jsonschema.validate(value, schema)


def test_x_keel_overrides_and_turns_off():
    compiled, bounds = bounded_schema({"type": "string", "x-keel": {"max_string_length": 200}})
    assert compiled == {"type": "string", "maxLength": 200} and bounds.max_string_length == 200
    compiled, bounds = bounded_schema({"type": "string", "x-keel": {"bounded": False}})
    assert compiled == {"type": "string"} and not bounds.bounded
    assert Bounds().bounded


@pytest.mark.parametrize(
    "extension", [{"max_len": 3}, {"max_items": -1}, {"bounded": 1}, {"max_items": True}, "x"]
)
def test_bad_x_keel_is_refused(extension):
    with pytest.raises(InvalidConstraintError, match="x-keel"):
        bounded_schema({"type": "string", "x-keel": extension})
