"""bench.profile_trace: kernel time by the model's named ranges, the rest, and the GPU's idle time, from a
torch profiler trace (here a small hand-made one with known answers)."""

from __future__ import annotations

import gzip
import json

import pytest

from bench.profile_trace import OTHER, RANGES, breakdown, load_events, main, table
from fireredasr_vllm.model import PROFILE_ENCODER, PROFILE_FEATURES


def kernel(ts, dur):
    return {"cat": "kernel", "name": "k", "ts": ts, "dur": dur}


def annotation(name, ts, dur):
    return {"cat": "gpu_user_annotation", "name": name, "ts": ts, "dur": dur}


EVENTS = [annotation(PROFILE_FEATURES, 0, 10), kernel(0, 4),
          annotation(PROFILE_ENCODER, 10, 40), kernel(10, 30), kernel(35, 10),  # overlapping kernels: busy 10..45
          kernel(60, 20), kernel(90, 10),  # the LLM and the rest; idle 4..10, 45..60, 80..90
          {"cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 100}]


def test_kernel_time_by_range_and_idle_time():
    result = breakdown(EVENTS)
    assert result["span_us"] == 100
    assert result["kernels_us"] == {RANGES[PROFILE_FEATURES]: 4, RANGES[PROFILE_ENCODER]: 40, OTHER: 30}
    assert result["busy_us"] == 4 + 35 + 20 + 10 and result["idle_us"] == 100 - 69
    assert "| GPU idle (no kernel running) | 0.0 | 31.0 |" in table(result)


def test_a_trace_without_kernels_is_refused():
    with pytest.raises(ValueError, match="no GPU kernels"):
        breakdown([{"cat": "cpu_op", "ts": 0, "dur": 5}])


def test_the_command_reads_a_gzipped_trace(tmp_path, capsys):
    trace = tmp_path / "trace.json.gz"
    with gzip.open(trace, "wt") as handle:
        json.dump({"traceEvents": EVENTS}, handle)
    assert load_events(trace) == EVENTS
    assert main([str(trace), "--output", str(tmp_path / "table.md")]) == 0
    assert (tmp_path / "table.md").read_text().strip() == capsys.readouterr().out.strip()
