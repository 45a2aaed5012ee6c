"""A context that uses every CPU the process may run on keeps each llama.cpp thread on its
own CPU; any other keeps them where the kernel puts them; where they run never changes an
output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keel.engine.threadpool import pinned_cpus

ALLOWED = sorted(os.sched_getaffinity(0))
PROMPT = "Here is a short story about a lighthouse:"

# Generates, then reports every thread's CPU list, in a new process (so no earlier
# context of this one has touched the threads).
_REPORT = """
import glob, json, sys, keel
text = keel.generate(sys.argv[1], max_new_tokens=24)
masks = []
for status in glob.glob('/proc/self/task/*/status'):
    with open(status) as lines:
        masks.append(next(l for l in lines if l.startswith('Cpus_allowed_list')).split()[1])
print(json.dumps({'text': text, 'masks': masks}))
"""


def _generate_and_report() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _REPORT, PROMPT],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
        cwd=Path(__file__).parents[1],
    )
    return json.loads(out.stdout)


def test_threads_are_pinned_only_when_a_context_uses_every_cpu(monkeypatch):
    assert pinned_cpus(1) is None
    assert pinned_cpus(len(ALLOWED) + 1) is None
    if len(ALLOWED) >= 2:
        assert pinned_cpus(len(ALLOWED)) == ALLOWED
        monkeypatch.setenv("KEEL_PIN_THREADS", "0")
        assert pinned_cpus(len(ALLOWED)) is None


@pytest.mark.skipif(len(ALLOWED) < 2, reason="pinning needs two CPUs or more")
def test_each_thread_keeps_to_its_cpu_and_the_text_is_the_unpinned_one(monkeypatch):
    monkeypatch.setenv("KEEL_THREADS", str(len(ALLOWED)))
    pinned = _generate_and_report()
    for cpu in ALLOWED:  # the calling thread on the first CPU, OpenMP's on the others
        assert str(cpu) in pinned["masks"]
    monkeypatch.setenv("KEEL_PIN_THREADS", "0")
    free = _generate_and_report()
    assert len(set(free["masks"])) == 1  # every thread keeps the process's CPUs
    assert pinned["text"] == free["text"]
