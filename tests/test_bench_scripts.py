"""The GPU benchmark's code, run on the CPU at tiny size (no timing asserts), and the GPU-host scripts."""

import copy
import hashlib
import io
import json
import lzma
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from dataclasses import replace

import pytest

from bench import gpu_benchmark as bench
from bench import trained_check
from eval.records import load_benchmark, write_benchmark
from fireredasr_vllm import LLM_DIR
from fireredasr_vllm.cli_args import DEFAULT_MAX_MODEL_LEN

REPO = Path(__file__).resolve().parents[1]
TOKENS = 4
PLAN = bench.Plan(clips=10, long_clips=2, tokens=TOKENS, concurrency=(4,), latency=((1, 3), (3, 6)),
                  long_concurrency=2, frontend_clips=3, official_batches=((1, 2), (2, 4)), official_long=1,
                  warmup=2)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return bench.build_model_dirs("tiny", tmp_path_factory.mktemp("bench"))


def benchmark_file(path, system, meta, measurements):
    """A benchmark file as ``main`` writes it (meta as ``run`` adds it), read back through the schema."""
    meta = {"system": system, "label": bench.SYSTEMS[system], "gpus": 0, "tp": 1, "dp": 1, "device": "cpu"} | meta
    return load_benchmark(write_benchmark(path, meta, measurements))


@pytest.fixture(scope="module")
def ours_record(engine, tmp_path_factory):
    """Every vLLM measurement, on the session engine (tiny model, this project's architecture)."""
    meta, measurements = bench.measure_vllm(engine, "ours", engine.model_dir, PLAN)
    return benchmark_file(tmp_path_factory.mktemp("ours") / "ours.json", "ours", meta, measurements)


@pytest.fixture(scope="module")
def official_record(dirs, tmp_path_factory):
    _, official_dir = dirs
    meta, measurements = bench.run_official(official_dir, PLAN)
    return benchmark_file(tmp_path_factory.mktemp("official") / "official.json", "official", meta, measurements)


def test_workload_has_aishell_like_durations():
    durations = bench.aishell_like(2000).durations
    assert 4.5 < durations.mean() < 5.5 and durations.min() >= 2.0 and durations.max() <= 10.0
    long = bench.long_clips(20).durations
    assert long.min() >= 25.0 and long.max() <= 30.0


def test_real_size_dirs_carry_configs_and_tokenizer_only(tmp_path):
    vllm_dir, official_dir = bench.build_model_dirs("real", tmp_path)
    config = json.loads((vllm_dir / "config.json").read_text())
    assert config["architectures"] == ["FireRedASRLLMForConditionalGeneration"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (3584, 28, 152064)
    assert config["audio_encoder_conf"]["d_model"] == 1280 and config["audio_encoder_conf"]["n_layers_enc"] == 16
    assert config["audio_encoder_conf"]["n_head"] == 20 and config["torch_dtype"] == "bfloat16"
    assert (vllm_dir / "preprocessor_config.json").exists() and (vllm_dir / "tokenizer_config.json").exists()
    assert not list(vllm_dir.glob("*.safetensors")) and not list(official_dir.rglob("*.safetensors"))
    llm = json.loads((official_dir / LLM_DIR / "config.json").read_text())
    assert (llm["hidden_size"], llm["intermediate_size"], llm["num_key_value_heads"]) == (3584, 18944, 4)


def test_vllm_measurements_decode_exactly_the_fixed_tokens(ours_record):
    """The passes in the results schema: seconds, RTFx and rates from eval.records.speed."""
    [offline] = bench.passes(ours_record, "offline")
    figures = offline.summary
    assert (figures.utterances, figures.failed) == (PLAN.clips, 0)
    assert offline.extra["output_tokens_per_clip"] == [TOKENS]
    audio = ours_record.meta["workload"]["audio_s"]
    assert figures.rtfx == pytest.approx(audio / figures.wall_seconds, rel=0.02)
    assert figures.output_tokens_per_s == pytest.approx(PLAN.clips * TOKENS / figures.wall_seconds)
    assert offline.extra["prompt_tokens_mean"] > 10 and offline.extra["api_cpu_ms_per_clip"] > 0
    assert 0 < figures.latency_p50 <= figures.wall_seconds  # seconds, not milliseconds
    online = bench.passes(ours_record, "online")
    for latency, (in_flight, clips) in zip(online, PLAN.latency, strict=True):
        assert (latency.concurrency, latency.summary.utterances) == (in_flight, clips)
        assert 0 < latency.summary.latency_p50 <= latency.summary.latency_p90 <= latency.summary.latency_p99
        assert 0 < latency.summary.ttft_p50 <= latency.summary.latency_p50
    [long] = bench.passes(ours_record, "long")
    assert long.summary.utterances == PLAN.long_clips and ours_record.meta["long_workload"]["min_s"] >= 25
    assert ours_record.meta["frontend"]["features_cpu_ms_per_clip"] > 0
    # the session engine was built without the benchmark's worker extension
    assert "memory_stats" in ours_record.meta["memory"]["error"]


def test_official_static_batches_decode_exactly_the_fixed_tokens(official_record):
    offline = bench.passes(official_record, "offline")
    assert [m.concurrency for m in offline] == [1, 2]  # the batch size
    for measurement, (_, clips) in zip(offline, PLAN.official_batches, strict=True):
        assert measurement.summary.utterances == clips and measurement.extra["output_tokens_per_clip"] == [TOKENS]
    [online] = bench.passes(official_record, "online")
    assert online.summary.latency_p50 > 0 and bench.passes(official_record, "long")[0].summary.utterances == 1
    assert official_record.meta["frontend"]["features_cpu_ms_per_clip"] > 0


def test_report_writes_tables_and_plots(ours_record, official_record, tmp_path):
    text = bench.report([ours_record.path, official_record.path], tmp_path / "plots")
    assert bench.SYSTEMS["ours"] in text and bench.SYSTEMS["official"] in text
    best = {b.meta["system"]: bench.best_offline(b).summary.rtfx for b in (ours_record, official_record)}
    assert json.loads(text.split("## Ratios (best RTFx)\n")[1].splitlines()[0]) == {
        "ours_over_official": round(best["ours"] / best["official"], 2)}
    p50 = bench.passes(ours_record, "online")[0].summary.latency_p50
    assert "| latency, 1 in flight | 3 | " in text and f"{1000 * p50:.1f} / " in text  # shown in ms
    for name in ("gpu_throughput.png", "gpu_latency.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"


def test_files_written_before_the_schema_load_and_report_as_committed():
    """bench/results/gpu_*.json (the old layout, ``*_ms``) read through load_benchmark; the report of the H200
    files is the committed summary, resource figures included."""
    files = sorted((REPO / "bench" / "results").glob("gpu_*.json"))
    for benchmark in map(load_benchmark, files):
        assert bench.passes(benchmark, "offline") and benchmark.meta["system"] in bench.SYSTEMS
    h200 = [f for f in files if f.name.startswith("gpu_h200_")]
    committed = (REPO / "bench" / "results" / "gpu_h200_summary.md").read_text().split("\n\nPlots:")[0]
    assert bench.report(h200, None).rstrip() == committed.rstrip()


def test_scaling_efficiency_compares_with_the_same_machine(ours_record):
    one = replace_offline(ours_record, rtfx=100.0, gpus=1, machine="m")
    tp2 = replace_offline(ours_record, rtfx=150.0, gpus=2, tp=2, machine="m")
    other_machine = replace_offline(ours_record, rtfx=10.0, gpus=1, machine="n")
    [row] = bench.scaling([one, other_machine, tp2])
    assert row == {"mode": "TP", "gpus": 2, "rtfx": 150.0, "rtfx_1gpu": 100.0, "efficiency": 0.75}


def replace_offline(benchmark, *, rtfx, **meta):
    measurements = [replace(m, summary=replace(m.summary, rtfx=rtfx)) if m.mode == "offline" else m
                    for m in benchmark.measurements]
    return replace(benchmark, meta=benchmark.meta | meta | {"device": "GPU"}, measurements=measurements)


def test_cli_speaks_the_shared_vocabulary(capsys, tmp_path):
    args = bench.parse_args(["run", "--system", "ours", "-dp", "2", "--tensor-parallel-size", "1", "--output", "x.json",
                             "--in-flight", "16,64"])
    assert (args.data_parallel_size, args.tensor_parallel_size, args.max_model_len) == (2, 1, DEFAULT_MAX_MODEL_LEN)
    assert (args.out, args.concurrency) == ("x.json", "16,64")
    older = bench.parse_args(["run", "--system", "ours", "--out", "y.json", "--concurrency", "8"])  # the recorded runs'
    assert (older.out, older.concurrency) == ("y.json", "8")
    recorded = bench.parse_args(["run", "--system", "ours", "--tp", "2", "--out", "x.json"])  # docs' older spelling
    assert (recorded.tensor_parallel_size, recorded.data_parallel_size) == (2, 1)
    (tmp_path / "notes.json").write_text("[1, 2]")
    assert bench.main(["report", str(tmp_path / "notes.json")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'notes.json'}: not a benchmark file (bench/results/*.json)\n"


def test_gpu_run_verifies_unpacks_and_registers_entry_points(tmp_path):
    """tools/gpu_run.sh on parts laid out as tools/gpu_bundle.sh writes them."""
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tar:
        module = b"VALUE = 42\n"
        info = tarfile.TarInfo("bundled_module.py")
        info.size = len(module)
        tar.addfile(info, io.BytesIO(module))
    blob = lzma.compress(payload.getvalue())
    half = len(blob) // 2
    sums = []
    for i, chunk in enumerate((blob[:half], blob[half:])):
        (tmp_path / f"p{i}").mkdir()
        (tmp_path / f"p{i}" / f"payload.part.0{i}").write_bytes(chunk)
        sums.append(f"{hashlib.sha256(chunk).hexdigest()}  payload.part.0{i}")
    for i in range(2):
        (tmp_path / f"p{i}" / "payload.sha256").write_text("\n".join(sums) + "\n")
    env = os.environ | {"GPU_RUN_PARTS": str(tmp_path / "parts"), "GPU_RUN_SITE": str(tmp_path / "site")}
    script = str(REPO / "tools" / "gpu_run.sh")
    check = ("import bundled_module, importlib.metadata as md; print(bundled_module.VALUE, [e.value for d in "
             f"md.distributions(path=[{str(tmp_path / 'site')!r}]) for e in d.entry_points])")
    first = subprocess.run(["bash", script, "--stage", str(tmp_path / "p0"), "--", sys.executable, "-c", check],
                           env=env, capture_output=True, text=True)
    assert first.returncode != 0 and "payload.part.01" in first.stdout + first.stderr  # a part is missing
    done = subprocess.run(["bash", script, "--stage", str(tmp_path / "p1"), "--", sys.executable, "-c", check],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    registered = done.stdout.splitlines()[-1]  # the plugin and the named-model builders of pyproject.toml
    assert registered == "42 ['fireredasr_vllm:register', 'testkit.tiny:tiny_model_dir']", done.stdout


def test_trained_check_scores_and_compares_tokens(engine, tmp_path):
    result = trained_check.run(engine=engine, path=tmp_path / "a.json")
    summary = result.measurements[0].summary
    assert (summary.metric, summary.utterances, summary.failed) == ("cer", 30, 0) and summary.error_rate < 0.10
    assert summary.rtfx > 0 and result.meta["dtype"] == engine.dtype == "float32"  # auto on CPU
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    write_benchmark(paths[0], result.meta, result.measurements, **result.details)
    other = copy.deepcopy(result.details)
    first = next(iter(other["utterances"].values()))
    first["token_ids"] = first["token_ids"][:-1]
    write_benchmark(paths[1], result.meta, result.measurements, **other)
    assert load_benchmark(paths[0]).measurements[0].summary == summary  # the schema, read back
    rows = trained_check.report(paths).splitlines()[2:]
    assert [row.split("|")[-2].strip() for row in rows] == ["30/30", "29/30"]
