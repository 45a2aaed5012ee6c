import os
import tempfile

import pytest

# One cache dir for the whole run (models assembled once, digests remembered), never the
# user's own. Set before keel reads its settings.
os.environ.setdefault("KEEL_CACHE_DIR", tempfile.mkdtemp(prefix="keel-test-cache-"))
os.environ.pop("KEEL_ALLOW_FALLBACK", None)
# Equivalence tests must compare real runs; the cache tests turn caching on themselves.
os.environ["KEEL_CACHE"] = "0"
os.environ.pop("KEEL_ALLOW_DOWNLOADS", None)
os.environ["HF_HUB_OFFLINE"] = "1"

MODELS = ["smollm2-135m", "gemma3-270m"]


@pytest.fixture(params=MODELS)
def model_name(request):
    return request.param


def pytest_terminal_summary(terminalreporter):
    """Say how many golden cases were compared: a run that skipped them all must show."""
    from test_golden import golden_counts

    counts = golden_counts()
    if counts["compared"] or counts["skipped"]:
        terminalreporter.write_line(
            f"golden cases: {counts['compared']} compared exactly, {counts['skipped']} skipped"
        )
