"""Committed outputs of both bundled models, checked exactly where the numbers can match.

The comparison key is what decides the numbers (model sha256, llama.cpp build and CPU
feature line, context settings), not keel's version or the sampling fields, so a version
bump never turns goldens into skips. Where the key differs, the case is skipped on a
developer's machine but fails under CI (CI=true), and the summary says how many ran.
"""

import json
import os

import pytest
from golden_cases import CASES, HERE, numbers_key, run_case

_counts = {"compared": 0, "skipped": 0}


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
    ours, theirs = numbers_key(result["fingerprint"]), numbers_key(golden["fingerprint"])
    if ours != theirs:
        message = f"golden outputs were made with {theirs}, this run has {ours}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        _counts["skipped"] += 1
        pytest.skip(message)
    assert result["tokens"] == golden["tokens"]
    assert result["text"] == golden["text"]
    assert result["finish_reason"] == golden["finish_reason"]
    _counts["compared"] += 1


def golden_counts() -> dict:
    return dict(_counts)
