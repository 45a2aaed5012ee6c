"""Schemas as users write them (no size bounds) finish valid on both bundled models: a
representative sample here, every schema and four settings in bench/structured_suite.py."""

import jsonschema
import pytest
from fresh import generate_in_fresh_process
from pydantic import TypeAdapter
from schema_suite import CASES

import keel

SAMPLE = ["product", "person", "customer", "book", "todo", "float", "dict-str-int", "json-object"]
CHOSEN = [case for case in CASES if case[0] in SAMPLE]


def _check(schema, value):
    if isinstance(schema, dict):
        jsonschema.validate(value, schema)
    else:
        TypeAdapter(schema).validate_python(value)


@pytest.mark.parametrize(("name", "schema", "prompt"), CHOSEN, ids=[c[0] for c in CHOSEN])
def test_unbounded_schemas_finish_valid(name, schema, prompt, model_name):
    for setting in ({"temperature": 0.0}, {"temperature": 0.7, "seed": 1}):
        value = keel.generate_json(prompt, schema, model=model_name, **setting)
        _check(schema, value)


def test_the_spec_example_gives_a_product_on_the_default_model():
    from schema_suite import Product

    text = keel.generate("Create a laptop product", schema=Product)
    assert text.startswith("<json-output>") and text.endswith("</json-output>")
    product = keel.generate_json("Create a laptop product", Product)
    assert isinstance(product, Product) and len(product.name) <= 48
    assert "".join(keel.generate_iter("Create a laptop product", schema=Product)) == text


def test_budget_closed_output_is_the_same_everywhere(tmp_path):
    """A run that the budget closes (max_new_tokens below what the model would write) gives
    the same text repeated, streamed, from the cache, and in a fresh process."""
    from keel.cache import configure_cache

    prompt, options = (
        "Create a laptop product",
        {"max_new_tokens": 36, "temperature": 0.7, "seed": 4},
    )
    from schema_suite import Product

    text = keel.generate(prompt, schema=Product, **options)
    assert Product.model_validate_json(text[len("<json-output>") : -len("</json-output>")])
    assert keel.generate(prompt, schema=Product, **options) == text
    assert "".join(keel.generate_iter(prompt, schema=Product, **options)) == text
    configure_cache(enabled=True, directory=tmp_path)
    try:
        assert keel.generate(prompt, schema=Product, **options) == text  # miss, stored
        events = list(keel.stream_generate(prompt, schema=Product, **options))
        assert all(e.cached for e in events) and "".join(e.text for e in events) == text
    finally:
        configure_cache(reset=True)
    fresh = generate_in_fresh_process(
        prompt, options, setup="from schema_suite import Product", extra=", schema=Product"
    )
    assert fresh == text
