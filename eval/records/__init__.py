"""The results records, one module a job: ``schema`` (the row layout, ``Summary``, speed figures, provenance),
``runs`` (run folders), ``benchmarks`` (benchmark JSON files) and ``legacy`` (files written before the schema).

Every public name is importable from here (``from eval.records import load_run, Summary``).
"""

from eval.records.benchmarks import BENCHMARK_SCHEMA, Benchmark, is_benchmark, load_benchmark, write_benchmark
from eval.records.runs import (MANIFEST, ROWS, SUMMARY, Run, RunWriter, list_runs, load_run, read_rows, read_summary,
                               rows_frame)
from eval.records.schema import (LEGACY_KEYS, PERCENTILE_POINTS, ROW_COLUMNS, SPEED_FIELDS, Measurement, Summary,
                                 git_revision, per_second, percentiles, provenance, read_json, speed, upgrade_table,
                                 write_json_atomic)

__all__ = ["BENCHMARK_SCHEMA", "LEGACY_KEYS", "MANIFEST", "PERCENTILE_POINTS", "ROWS", "ROW_COLUMNS", "SPEED_FIELDS",
           "SUMMARY", "Benchmark", "Measurement", "Run", "RunWriter", "Summary", "git_revision", "is_benchmark",
           "list_runs", "load_benchmark", "load_run", "per_second", "percentiles", "provenance", "read_json",
           "read_rows", "read_summary", "rows_frame", "speed", "upgrade_table", "write_benchmark",
           "write_json_atomic"]
