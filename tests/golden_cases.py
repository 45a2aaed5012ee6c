"""Rewrite the golden outputs: `python tests/golden_cases.py` (only after a reviewed
change that is meant to alter outputs, e.g. a new llama.cpp build)."""

import json
from pathlib import Path

import keel

HERE = Path(__file__).parent / "golden"

CASES = {
    "smollm2-135m": [
        {"prompt": "Write a haiku about the sea.", "raw": False},
        {"prompt": "Translate to French: good morning, my friend.", "raw": False},
        {"prompt": "Écris une phrase sur les 🐙 et 日本.", "raw": False},
        {"prompt": "def fibonacci(n):", "raw": True},
    ],
    "gemma3-270m": [
        {"prompt": "The capital of France is", "raw": False},
        {"prompt": "Once upon a time, in a small village,", "raw": False},
        {"prompt": "東京は日本の首都です。大阪は", "raw": False},
        {"prompt": "List of fruits: apple, banana,", "raw": False},
    ],
}
SETTINGS = [{"temperature": 0.0, "seed": 42}, {"temperature": 0.7, "seed": 1234}]
MAX_NEW_TOKENS = 48


def golden_key(fingerprint: keel.Fingerprint) -> dict:
    """What is stored with each golden case: the model, engine build and context settings."""
    return {key: fingerprint.details[key] for key in ("model", "engine", "context")}


def numbers_key(stored: dict) -> dict:
    """What must match for the numbers to match: the model's sha256 (not its name), the
    llama.cpp build and CPU feature line, and the context settings."""
    return {
        "sha256": stored["model"]["sha256"],
        "engine": stored["engine"],
        "context": stored["context"],
    }


def run_case(model: str, case: dict, setting: dict) -> dict:
    events = list(
        keel.stream_generate(
            case["prompt"], model=model, raw=case["raw"], max_new_tokens=MAX_NEW_TOKENS, **setting
        )
    )
    return {
        **case,
        **setting,
        "max_new_tokens": MAX_NEW_TOKENS,
        "tokens": [event.token for event in events],
        "text": "".join(event.text for event in events),
        "finish_reason": events[-1].finish_reason,
        "fingerprint": golden_key(events[-1].fingerprint),
    }


def main() -> None:
    for model, cases in CASES.items():
        results = [run_case(model, case, setting) for case in cases for setting in SETTINGS]
        path = HERE / f"{model}.json"
        path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {len(results)} cases to {path}")


if __name__ == "__main__":
    main()
