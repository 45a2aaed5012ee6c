"""What each provider is sent, and how names and URLs are read: no server, no model."""

import json

import pytest

from keel.config import REMOTE_URL_VARIABLES, settings
from keel.errors import InvalidParameterError
from keel.params import make_params
from keel.remote import PROVIDERS, Shape, is_remote
from keel.remote.target import remote_target
from keel.structured import build_constraint


def _request(provider, constraint=None, model="m", **options):
    params = make_params("hi", constraint=constraint.key if constraint else "", **options)
    return PROVIDERS[provider].request(model, params, constraint)


def test_every_provider_has_its_url_variable_in_settings():
    assert {p.url_variable for p in PROVIDERS.values()} <= set(REMOTE_URL_VARIABLES)


def test_names():
    assert is_remote("openai:gpt-4o-mini") and is_remote("openrouter:meta/llama-3-8b")
    assert not is_remote("smollm2-135m") and not is_remote("C:/models/x.gguf")
    target = remote_target("openrouter:meta/llama-3-8b", None, settings())
    assert (target.model, target.base_url) == ("meta/llama-3-8b", "https://openrouter.ai/api/v1")
    keel_target = remote_target("keel:smollm2-135m", "http://h:8000/", settings())
    assert keel_target.base_url == "http://h:8000/v1"  # a keel server is named by its root


def test_openai_request_fields():
    request = _request("openai", max_new_tokens=10, temperature=0.5, seed=3, stop=["a"])
    assert request.chat and request.extra == {}
    assert request.fields == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 10,
        "temperature": 0.5,
        "top_p": 1.0,
        "seed": 3,
        "stop": ["a"],
    }
    raw = _request("openai", raw=True, logprobs=True, top_logprobs=2)
    assert not raw.chat and raw.fields["prompt"] == "hi" and raw.fields["logprobs"] == 2


def test_openai_reasoning_models_get_no_temperature():
    for model in ("o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini"):
        fields = _request("openai", model=model, max_new_tokens=9).fields
        assert "temperature" not in fields and "top_p" not in fields
        assert fields["max_completion_tokens"] == 9 and "max_tokens" not in fields
    assert "temperature" in _request("openai", model="gpt-4o-mini").fields
    assert "temperature" in _request("openrouter", model="openai/o3").fields  # its own rules


def test_more_stop_strings_than_openai_takes_are_cut_by_keel_only():
    stops = ["a", "b", "c", "d", "e"]
    assert "stop" not in _request("openai", stop=stops).fields
    assert _request("vllm", stop=stops).fields["stop"] == stops
    assert _request("openai", eos_string="END").fields["stop"] == ["END"]
    assert _request("keel", eos_string="END").extra["eos_string"] == "END"


def test_keel_only_controls():
    with pytest.raises(InvalidParameterError, match="vllm:, llamacpp: or keel:"):
        _request("openai", top_k=5)
    assert _request("vllm", top_k=5, min_p=0.1).extra == {"top_k": 5, "min_p": 0.1}
    with pytest.raises(InvalidParameterError, match="keel:"):
        _request("vllm", no_repeat_ngram_size=2)
    everything = _request("keel").extra
    assert everything["repetition_context_size"] == 20 and everything["top_k"] == 0


def test_structured_output_per_provider():
    closed = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    schema = build_constraint(schema=closed)
    openai_request = _request("openai", schema)
    response_format = openai_request.fields["response_format"]
    assert response_format["type"] == "json_schema" and response_format["json_schema"]["strict"]
    assert openai_request.shape is Shape.JSON
    loose = build_constraint(schema={"type": "object", "properties": {"a": {"type": "string"}}})
    assert not _request("openai", loose).fields["response_format"]["json_schema"]["strict"]
    choices = build_constraint(choices=["x", 'y"z'])
    assert _request("openai", choices).shape is Shape.CHOICE
    grammar = _request("llamacpp", choices).extra["grammar"]
    assert grammar == 'root ::= "x" | ' + json.dumps('y"z')
    assert _request("llamacpp", schema).fields["response_format"]["type"] == "json_object"
    regex = build_constraint(regex="[0-9]+")
    assert _request("vllm", regex).extra == {"structured_outputs": {"regex": "[0-9]+"}}
    keel_json = _request("keel", schema)
    assert keel_json.shape is Shape.AS_IS  # a keel server keeps the tags
    assert keel_json.extra["structured_outputs"] == {"json": schema.schema}


def test_the_request_description_holds_no_input():
    described = _request("openai").described()
    assert "messages" not in described and described["endpoint"] == "chat"
