"""Committed outputs of both bundled models, checked exactly on a matching build."""

import json

import pytest
from golden_cases import CASES, HERE, run_case


def _cases() -> list:
    return [
        pytest.param(model, case, id=f"{model}-{index}")
        for model in CASES
        for index, case in enumerate(json.loads((HERE / f"{model}.json").read_text()))
    ]


@pytest.mark.parametrize(("model", "golden"), _cases())
def test_golden_output(model, golden):
    setting = {"temperature": golden["temperature"], "seed": golden["seed"]}
    case = {"prompt": golden["prompt"], "raw": golden["raw"]}
    result = run_case(model, case, setting)
    if result["fingerprint"] != golden["fingerprint"]:
        pytest.skip(f"different model or build than the golden run: {result['fingerprint']}")
    assert result["tokens"] == golden["tokens"]
    assert result["text"] == golden["text"]
    assert result["finish_reason"] == golden["finish_reason"]
