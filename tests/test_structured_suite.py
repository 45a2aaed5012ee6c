"""Schemas as users write them (no size bounds) finish valid on both bundled models: a
representative sample here, every schema and four settings in bench/structured_suite.py."""

from pathlib import Path

import jsonschema
import pytest
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
    import json
    import subprocess
    import sys

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
    code = (
        "import json, sys; sys.path.insert(0, 'tests'); import keel;"
        "from schema_suite import Product;"
        "print(json.dumps(keel.generate(sys.argv[1], schema=Product, **json.loads(sys.argv[2]))))"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code, prompt, json.dumps(options)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert json.loads(fresh.stdout) == text
