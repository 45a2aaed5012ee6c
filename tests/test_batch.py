"""Batch generation on one machine: every row equals keel.generate with the row's
parameters, however many run at once; the job file is resumable after kill -9, refuses
another job's output, and bad rows are all reported, with line numbers, before any runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import keel
from keel import BatchInputError

KEEL = str(Path(sys.executable).with_name("keel"))
TOPICS = ["a lighthouse", "a fox", "the moon", "a train", "a garden", "a storm"]


def rows(count: int, tokens: int = 12) -> list[dict]:
    made = []
    for i in range(count):
        row = {
            "id": f"r{i}",
            "prompt": f"Write about {TOPICS[i % 6]} (#{i}).",
            "max_new_tokens": tokens,
        }
        if i % 3:
            row |= {"seed": i, "temperature": 0.8}
        if i % 5 == 4:
            row = {
                "id": f"r{i}",
                "messages": [{"role": "user", "content": f"Say hi #{i}."}],
                "max_new_tokens": tokens,
            }
        made.append(row)
    made.append({"id": "choice", "prompt": "Pick one.", "choices": ["yes", "no"]})
    return made


def solo(row: dict) -> str:
    options = {key: value for key, value in row.items() if key != "id"}
    return keel.generate(options.pop("prompt", None), **options)


def test_generate_batch_equals_generate_row_by_row_at_any_concurrency():
    batch = rows(10)
    expected = [solo(row) for row in batch]
    for concurrency in (1, 4, 8):
        results = keel.generate_batch(batch, concurrency=concurrency)
        assert [r.text for r in results] == expected
        assert [r.id for r in results] == [row["id"] for row in batch]
    assert results[-1].value in ("yes", "no")
    seen = sorted(r.index for r in keel.iter_batch(batch, concurrency=3))
    assert seen == list(range(len(batch)))


@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m"])
def test_rows_spread_over_lanes_equal_generate_row_by_row(model):
    from keel.loaded import load_location
    from keel.models import resolve_model

    batch = [row | {"model": model} for row in rows(12)]
    expected = [solo(row) for row in batch]
    for lanes in (2, 3):
        results = keel.generate_batch(batch, engine=keel.LocalEngine(lanes=lanes))
        assert [r.text for r in results] == expected
    loaded = load_location(resolve_model(model))
    assert len(loaded.lanes) >= 3  # created for the batch, kept, on the same weights
    assert all(lane.worker.decode_calls > 0 for lane in loaded.lanes)
    assert loaded.info()["lanes"] == len(loaded.lanes)
    spare = [lane.worker.decode_calls for lane in loaded.lanes[1:]]
    keel.generate("Once", model=model, max_new_tokens=8)  # after the batch: the first lane
    assert [lane.worker.decode_calls for lane in loaded.lanes[1:]] == spare


def test_bad_lanes_are_refused(tmp_path):
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="lanes must be a positive integer"):
            keel.LocalEngine(lanes=bad)
    source = write_input(tmp_path / "in.jsonl", rows(1))
    out = cli(
        str(source), "-o", str(tmp_path / "o.jsonl"), "--engine", "ray", "--lanes", "2", check=False
    )
    assert out.returncode == 2 and "--lanes is for --engine local" in out.stderr


def test_defaults_apply_to_rows_that_do_not_set_them():
    results = keel.generate_batch(
        ["Name a colour.", {"prompt": "Name a colour.", "seed": 5}],
        max_new_tokens=6,
        temperature=0.8,
    )
    assert results[0].text == keel.generate("Name a colour.", max_new_tokens=6, temperature=0.8)
    assert results[1].text == keel.generate(
        "Name a colour.", max_new_tokens=6, temperature=0.8, seed=5
    )


def test_a_failing_row_is_reported_and_the_others_run():
    schema = {"type": "object", "properties": {"n": {"type": "string"}}, "required": ["n"]}
    results = keel.generate_batch(
        [{"prompt": "A:", "schema": schema, "max_new_tokens": 2}, "Hi"], max_new_tokens=4
    )
    assert results[0].error and "max_new_tokens" in results[0].error and results[0].text is None
    assert results[1].error is None and results[1].text


def test_every_bad_row_is_reported_before_anything_runs():
    bad = [
        {"prompt": "a", "foo": 1},
        {"messages": [], "prompt": "x"},
        {"prompt": "b", "seed": -1},
        {"prompt": "c", "schema": {"type": "objekt"}},
        {"id": "same", "prompt": "d"},
        {"id": "same", "prompt": "e"},
    ]
    with pytest.raises(BatchInputError) as caught:
        keel.generate_batch(bad)
    problems = caught.value.problems
    assert len(problems) == 5, problems
    assert problems[0].startswith("row 0 (id 0): unknown parameter")
    assert any("row 5 (id same): the id is already used" in p for p in problems)


def cli(*arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([KEEL, "batch", *arguments], capture_output=True, text=True, timeout=600)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def write_input(path: Path, batch: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in batch))
    return path


def test_cli_writes_in_input_order_reruns_and_refuses_another_jobs_output(tmp_path):
    batch = rows(6)
    source = write_input(tmp_path / "in.jsonl", batch)
    output = tmp_path / "out.jsonl"
    cli(str(source), "-o", str(output), "--concurrency", "3")
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["id"] for row in written] == [row["id"] for row in batch]
    assert [row["text"] for row in written] == [solo(row) for row in batch]
    assert "complete already" in cli(str(source), "-o", str(output)).stderr
    other = cli(str(source), "-o", str(output), "--seed", "7", check=False)
    assert other.returncode == 1 and "another batch job" in other.stderr
    cli(str(source), "-o", str(output), "--seed", "7", "--overwrite")
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_cli_reports_bad_rows_with_line_numbers(tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text(
        '{"id": "x", "prompt": "a", "foo": 1}\nnot json\n\n{"id": "y", "prompt": "b"}\n'
    )
    out = cli(str(source), "-o", str(tmp_path / "o.jsonl"), check=False)
    assert out.returncode == 1
    assert "line 1 (id x): unknown parameter(s) 'foo'" in out.stderr
    assert "line 2: not JSON" in out.stderr
    assert not (tmp_path / "o.jsonl").exists()
    good = write_input(tmp_path / "good.jsonl", rows(3))
    assert "4 rows OK" in cli(str(good), "-o", str(tmp_path / "o.jsonl"), "--validate-only").stdout


def kill_mid_job(command: list[str], log: Path, rows_done: int) -> None:
    """Start a batch job and kill -9 it once its log holds `rows_done` rows, then cut its
    last line short as a crash mid-write would."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (log.exists() and log.read_text().count("\n") >= rows_done):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with log.open("a") as torn:
        torn.write('{"id": "r15", "text": "half a li')


def test_cli_resumes_after_kill_9_with_the_same_file(tmp_path):
    batch = rows(16, tokens=24)
    source = write_input(tmp_path / "in.jsonl", batch)
    reference = tmp_path / "reference.jsonl"
    cli(str(source), "-o", str(reference))
    output = tmp_path / "out.jsonl"
    command = [KEEL, "batch", str(source), "-o", str(output), "--concurrency", "2", "--lanes", "1"]
    kill_mid_job(command, tmp_path / "out.jsonl.partial", rows_done=4)
    assert not output.exists()
    resumed = cli(str(source), "-o", str(output))
    assert "from an earlier run" in resumed.stderr
    assert output.read_text() == reference.read_text()


def test_csv_and_parquet_inputs_give_the_jsonl_output(tmp_path):
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    batch = rows(5, tokens=6)
    reference = tmp_path / "reference.jsonl"
    cli(str(write_input(tmp_path / "in.jsonl", batch)), "-o", str(reference))
    columns = sorted({name for row in batch for name in row})
    with open(tmp_path / "in.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        for row in batch:
            text = {"id", "prompt"}
            writer.writerow({k: v if k in text else json.dumps(v) for k, v in row.items()})
    table = pa.Table.from_pylist([{name: row.get(name) for name in columns} for row in batch])
    pq.write_table(table, tmp_path / "in.parquet")
    for source in ("in.csv", "in.parquet"):
        output = tmp_path / f"{source}.jsonl"
        cli(str(tmp_path / source), "-o", str(output))
        assert output.read_text() == reference.read_text(), source
    (tmp_path / "bad.csv").write_text('id,prompt,seed\na,"Hi",7\nb,"Hi\nthere",seven\n')
    out = cli(str(tmp_path / "bad.csv"), "-o", str(tmp_path / "o.jsonl"), check=False)
    assert out.returncode == 1
    assert "line 3 (id b): column 'seed': 'seven' is not JSON" in out.stderr
