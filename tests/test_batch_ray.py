"""Batch generation on Ray (Ray Data actors, each with its own model): the output file
is byte for byte the one the local engine writes, for 1 or 2 actors and any batch size,
and a job killed mid-way resumes to the same file. One local Ray cluster (2 CPUs) serves
the module's tests; the first test starts and stops a Ray of its own, as a user's
`keel batch --engine ray` does."""

from __future__ import annotations

import json
import sys

import pytest
import ray
from test_batch import KEEL, cli, kill_mid_job, rows, solo, write_input

import keel
from keel import RayEngine
from keel.errors import MissingExtraError


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_ray_output_file_is_the_local_one_however_the_rows_are_split(tmp_path):
    batch = rows(9)
    source = write_input(tmp_path / "in.jsonl", batch)
    local = tmp_path / "local.jsonl"
    cli(str(source), "-o", str(local))
    texts = [json.loads(line)["text"] for line in local.read_text().splitlines()]
    assert texts == [solo(row) for row in batch]
    splits = [
        ["--actors", "1", "--batch-size", "16"],
        ["--actors", "2", "--batch-size", "3", "--concurrency", "2"],
    ]
    for number, split in enumerate(splits):
        output = tmp_path / f"ray{number}.jsonl"
        cli(str(source), "-o", str(output), "--engine", "ray", *split)
        assert output.read_bytes() == local.read_bytes(), split


def test_generate_batch_on_ray_equals_local(cluster):
    batch = rows(6, tokens=8)
    expected = keel.generate_batch(batch)
    for engine in ("ray", RayEngine(actors=2, batch_size=1)):
        assert keel.generate_batch(batch, engine=engine) == expected
    assert ray.is_initialized()  # the caller's Ray is left running


def test_ray_job_killed_mid_way_resumes_to_the_same_file(cluster, tmp_path):
    batch = rows(16, tokens=24)
    source = write_input(tmp_path / "in.jsonl", batch)
    reference = tmp_path / "reference.jsonl"
    cli(str(source), "-o", str(reference))
    output = tmp_path / "out.jsonl"
    ray_job = ["--engine", "ray", "--ray-address", cluster, "--batch-size", "2"]
    command = [KEEL, "batch", str(source), "-o", str(output), *ray_job]
    kill_mid_job(command, tmp_path / "out.jsonl.partial", rows_done=4)
    resumed = cli(str(source), "-o", str(output), *ray_job)
    assert "from an earlier run" in resumed.stderr
    assert output.read_text() == reference.read_text()


def test_ray_engine_settings_are_checked():
    with pytest.raises(ValueError, match="actors must be a positive integer"):
        RayEngine(actors=0)
    with pytest.raises(ValueError, match="engine must be"):
        keel.generate_batch(["Hi"], engine="spark")


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra sees
    with pytest.raises(MissingExtraError, match=r"keel-text\[ray\]"):
        keel.generate_batch(["Hi"], engine="ray", max_new_tokens=2)
