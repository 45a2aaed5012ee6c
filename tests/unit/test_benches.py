"""`make bench` is the one command that prints every benchmark's table, and README's
Benchmarks section says what each measures: a bench left out of either goes unseen. And
the interval the benches put on a median ratio has the coverage it claims."""

import re
import sys
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


def test_median_interval_takes_the_ranks_of_the_binomial_table():
    """The benches' confidence interval of a median ratio: the order statistics that the
    published tables give (n = 12: 3rd and 10th; 30: 10th and 21st; 50: 18th and 33rd),
    and none at all where even the extremes bracket the median less often than 95%."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from common import median_interval
    finally:
        sys.path.remove(str(ROOT / "bench"))
    assert median_interval([float(rank) for rank in range(1, 6)]) is None
    assert median_interval([float(rank) for rank in range(6, 0, -1)]) == (1.0, 6.0)
    for count, ranks in {12: (3, 10), 30: (10, 21), 50: (18, 33)}.items():
        assert median_interval([float(rank) for rank in range(count, 0, -1)]) == ranks
