"""Benchmark: `process_entry` on a large CSV against a bare csv-module loop, same file, same run.

Generates a CSV of `--size-mib` (default 1024; deterministic for a `--seed`) with typed
columns, about 10 % of rows invalid, stored like an ingest run would store it. Then, each in
its own child process (so each peak RSS is its own): (a) `pipeline_core.processing.
process_entry` on local storage — the path the `process` flow takes: stream, validate,
normalise, write JSONL + the invalid rows, publish atomically, latest.jsonl; (b) a bare loop
`csv.reader` → `csv.writer` over the same rows, no validation. Prints rows/s, MB/s, peak
RSS of each and the ratio a/b of their times (medians of `--repeat` runs).

    hatch run bench:process -- --size-mib 1024
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCHEMA = {
    "id": {"type": "int", "min": 1},
    "station": {"type": "str", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
    "country": {"type": "str", "pattern": "^[A-Z]{2}$"},
    "taken_at": {"type": "datetime"},
    "day": {"type": "date"},
    "temp_c": {"type": "float", "min": -60, "max": 60},
    "count": {"type": "int", "min": 0},
    "active": {"type": "bool"},
    "note": {"type": "str", "required": False},
}
WORDS = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet,",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
]
BROKEN = {  # one way to break each column
    "id": "x{}",
    "station": "abc-{}",
    "country": "Ireland",
    "taken_at": "yesterday",
    "day": "2026-02-30",
    "temp_c": "99.{}",
    "count": "-{}",
    "active": "maybe",
    "note": "",  # optional: an empty note is valid, so this row stays valid
}


def generate(path: Path, size: int, seed: int, invalid: float) -> int:
    """Write the CSV; returns its row count."""
    rng = random.Random(seed)
    names = list(SCHEMA)
    stations = [f"{a}{b}{c}-{n:02d}" for a, b, c in ("DUB", "CRK", "GAL", "LIM") for n in range(40)]
    countries = ["IE", "GB", "FR", "DE", "ES"]
    notes = [" ".join(rng.choices(WORDS, k=rng.randint(12, 30))) for _ in range(997)]
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(names)
        while fh.tell() < size:
            block = []
            for _ in range(10_000):
                rows += 1
                values = [
                    str(rows),
                    stations[rows % len(stations)],
                    countries[rows % len(countries)],
                    f"2026-{rows % 12 + 1:02d}-{rows % 28 + 1:02d}T{rows % 24:02d}:{rows % 60:02d}:"
                    f"{rows % 59:02d}{'Z' if rows % 3 else '+02:00'}",
                    f"2025-{rows % 12 + 1:02d}-{rows % 28 + 1:02d}",
                    f"{(rows % 1100) / 10 - 55:.1f}",
                    str(rows % 5000),
                    ("true", "no", "1", "False")[rows % 4],
                    notes[rows % len(notes)],  # some hold a comma: quoted
                ]
                if rng.random() < invalid:
                    column = rng.randrange(len(names) - 1)
                    values[column] = BROKEN[names[column]].format(rows % 97)
                block.append(values)
            writer.writerows(block)
    return rows


CHILD_OURS = """
import asyncio, json, sys, time
from pathlib import Path
from pipeline_core.manifest import EntryStatus, ManifestEntry
from pipeline_core.processing import process_entry
from pipeline_core.sources import Source
from pipeline_core.storage import LocalStorage

root, path, sha, schema = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
entry = ManifestEntry(source="bench", url="http://127.0.0.1:9/bench.csv",
                      status=EntryStatus.DOWNLOADED, sha256=sha, path=path, format="csv")
source = Source(name="bench", url="http://127.0.0.1:9/bench.csv", format="csv", schema=schema)
t0 = time.perf_counter()
summary = asyncio.run(process_entry(entry, source, LocalStorage(Path(root))))
elapsed = time.perf_counter() - t0
assert summary.error is None, summary.error
print(json.dumps({"seconds": elapsed, "rows": summary.rows_in, "rows_out": summary.rows_out,
                  "rows_invalid": summary.rows_invalid}))
"""

CHILD_BARE = """
import csv, json, sys, time
t0 = time.perf_counter()
rows = 0
with open(sys.argv[1], newline="", encoding="utf-8") as src, \\
        open(sys.argv[2], "w", newline="", encoding="utf-8") as dst:
    reader, writer = csv.reader(src), csv.writer(dst)
    writer.writerow(next(reader))
    for record in reader:
        writer.writerow(record)
        rows += 1
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": rows}))
"""


def run_child(code: str, *args: str) -> tuple[dict[str, float], float]:
    """Run `code` in a fresh interpreter: (its JSON result, its peak RSS in MiB)."""
    os.sync()  # start from the same state: the previous step's dirty pages written out
    time.sleep(1.0)
    child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE)
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"child failed ({child.returncode})")
    return json.loads(out), usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=float, default=1024)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--invalid", type=float, default=0.1, help="share of broken rows")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side; medians")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-process-"))
    try:
        raw = work / "data" / "raw" / "bench" / "file.csv"
        raw.parent.mkdir(parents=True)
        t0 = time.perf_counter()
        generate(raw, int(args.size_mib * 1024 * 1024), args.seed, args.invalid)
        digest = hashlib.sha256()
        with open(raw, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        stored = raw.parent / digest.hexdigest() / "bench.csv"
        stored.parent.mkdir()
        raw.rename(stored)
        size = stored.stat().st_size
        made = time.perf_counter() - t0

        ours: list[tuple[dict[str, float], float]] = []
        bare: list[tuple[dict[str, float], float]] = []
        for _ in range(args.repeat):
            (work / "bare.csv").unlink(missing_ok=True)
            bare.append(run_child(CHILD_BARE, str(stored), str(work / "bare.csv")))
            shutil.rmtree(work / "data" / "processed", ignore_errors=True)
            ours.append(
                run_child(
                    CHILD_OURS,
                    str(work / "data"),
                    str(stored.relative_to(work / "data")),
                    digest.hexdigest(),
                    json.dumps(SCHEMA),
                )
            )
    finally:
        if args.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    rows = int(ours[0][0]["rows"])
    assert int(bare[0][0]["rows"]) == rows, (bare[0][0], ours[0][0])
    a = statistics.median(r["seconds"] for r, _ in ours)
    b = statistics.median(r["seconds"] for r, _ in bare)
    rss_a, rss_b = max(m for _, m in ours), max(m for _, m in bare)
    mb = size / 1e6
    print(f"input: {mb:.0f} MB, {rows} rows, {int(ours[0][0]['rows_invalid'])} invalid "
          f"(generated in {made:.1f} s)")  # fmt: skip
    print(f"(a) process_entry : {a:7.2f} s  {rows / a:>10,.0f} rows/s  {mb / a:6.1f} MB/s  "
          f"peak RSS {rss_a:6.0f} MiB")  # fmt: skip
    print(f"(b) bare csv loop : {b:7.2f} s  {rows / b:>10,.0f} rows/s  {mb / b:6.1f} MB/s  "
          f"peak RSS {rss_b:6.0f} MiB")  # fmt: skip
    print(f"a/b = {a / b:.2f}   (runs: a {[round(r['seconds'], 2) for r, _ in ours]}, "
          f"b {[round(r['seconds'], 2) for r, _ in bare]})")  # fmt: skip


if __name__ == "__main__":
    main()
