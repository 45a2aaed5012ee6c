"""`make bench` is the one command that prints every benchmark's table, and README's
Benchmarks section says what each measures: a bench left out of either goes unseen."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]


def bench_scripts() -> set[str]:
    """The bench files that run on their own (bench/common.py is shared code)."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "bench").glob("*.py")
        if 'if __name__ == "__main__":' in path.read_text()
    }


def test_make_bench_runs_every_bench_script():
    recipe = (ROOT / "Makefile").read_text().split("\nbench:", 1)[1].split("\n\n", 1)[0]
    run = set(re.findall(r"\$\(PY\) (bench/\w+\.py)", recipe))
    assert run == bench_scripts()


def test_readme_describes_every_bench_script():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Benchmarks\n", 1)[1].split("\n### Latest figures\n", 1)[0]
    described = set(re.findall(r"^- `(bench/\w+\.py)`", section, flags=re.M))
    described |= set(re.findall(r"^  `(bench/\w+\.py)`", section, flags=re.M))
    assert bench_scripts() <= described
