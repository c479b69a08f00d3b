"""Benchmark files written before the schema, read into it: bench/gpu_benchmark.py's (``*_ms`` latencies),
bench/model_throughput.py's, bench/trained_check.py's and ``eval.run --bench``'s first layouts."""

from __future__ import annotations

from eval.records.schema import Measurement, Summary, per_second


def legacy_layout(data: dict):
    """The reader of ``data``'s older layout -> (meta, measurements, details); None if it is none of them."""
    if "system" in data and "offline" in data:
        return _gpu_benchmark
    if isinstance(data.get("rows"), dict) and "meta" in data:
        return _model_throughput_v0
    if "utterances" in data and "cer" in data:
        return _trained_check_v0
    if "official_rtfx" in data:
        return _official_bench_v0
    return None


def _ms(value) -> float | None:
    return None if value is None else value / 1000


GPU_V0_READ = {"clips", "ok", "wall_s", "rtfx", "clips_per_s", "output_tok_per_s", "latency", "batch_latency",
               "p50_ms", "p90_ms", "p99_ms", "ttft_p50_ms", "batch", "concurrency"}


def _gpu_measurement(system: str, mode: str, entry: dict, audio_seconds: float | None) -> Measurement:
    latency = entry.get("latency") or entry.get("batch_latency") or entry
    clips, ok = entry.get("clips", 0), entry.get("ok", entry.get("clips", 0))
    summary = Summary(utterances=ok, failed=clips - ok, wall_seconds=entry.get("wall_s"), rtfx=entry.get("rtfx"),
                      utts_per_s=entry.get("clips_per_s"), output_tokens_per_s=entry.get("output_tok_per_s"),
                      audio_seconds=audio_seconds if entry.get("rtfx") else None,
                      latency_p50=_ms(latency.get("p50_ms")), latency_p90=_ms(latency.get("p90_ms")),
                      latency_p99=_ms(latency.get("p99_ms")), ttft_p50=_ms(entry.get("ttft_p50_ms")))
    concurrency = entry.get("batch", entry.get("concurrency"))
    extra = {k: v for k, v in entry.items() if k not in GPU_V0_READ}  # resource figures (GPU busy, CPU ms, ...)
    return Measurement(system, mode, concurrency, summary, extra)


def _gpu_benchmark(data: dict):
    """bench/gpu_benchmark.py: offline passes, online latency points and a long-audio pass, ``*_ms``."""
    system = data["system"]
    audio = (data.get("workload") or {}).get("audio_s")
    measurements = [_gpu_measurement(system, "offline", e, audio if e.get("clips") == (data.get("workload") or {})
                                     .get("clips") else None) for e in data.get("offline") or []]
    measurements += [_gpu_measurement(system, "online", e, None) for e in data.get("latency") or []]
    if data.get("long"):
        measurements.append(_gpu_measurement(system, "long", data["long"], (data.get("long_workload") or {})
                                             .get("audio_s")))
    meta = {k: v for k, v in data.items() if k not in ("offline", "latency", "long")}
    return meta, measurements, {}


def _model_throughput_v0(data: dict):
    measurements = [Measurement(name, "offline", row.get("clips"), Summary(
        utterances=row["clips"], audio_seconds=row["audio_s"], wall_seconds=row["wall_s"], rtfx=row["rtfx"],
        utts_per_s=row["utts_per_s"], output_tokens_per_s=per_second(row["output_tokens"], row["wall_s"])),
        {"passes": row.get("passes")}) for name, row in data["rows"].items()]
    return data["meta"], measurements, {"cache": data.get("cache", {})}


def _trained_check_v0(data: dict):
    meta = {k: data[k] for k in ("model", "dtype", "device", "vllm", "torch") if k in data}
    summary = Summary(metric="cer", error_rate=data["cer"], utterances=data["clips"])
    return meta, [Measurement("vllm", "offline", None, summary)], {"utterances": data["utterances"]}


def _official_bench_v0(data: dict):
    """``eval.run --bench``'s bench.json before the schema."""
    return {}, [Measurement("vllm", "offline", None, Summary(rtfx=data.get("vllm_rtfx"),
                                                             utts_per_s=data.get("vllm_utts_per_s"))),
                Measurement("official", "offline", 1, Summary(
                    utterances=data["clips_official"], rtfx=data["official_rtfx"],
                    utts_per_s=data["official_utts_per_s"]))], {}
