"""eval/sweep/config.py and cli.py: the configuration (a TOML file, overridden by flags), its checks, and the plan."""

import itertools
from pathlib import Path

import pytest

from eval import sweep
from eval.datasets import TestSet
from eval.errors import UserError
from eval.normalize import NormalizerOptions
from eval.sweep.run import with_set_list
from eval.sweep.runners import summarize
from fireredasr_engine.options import Transcript

REPO = Path(__file__).resolve().parents[1]


def test_config_file_then_flags():
    args = sweep.parse_args(["--config", str(REPO / "examples" / "sweep_demo.toml"), "--limit", "3",
                             "--grid", "decoding=greedy,t0.7-p0.9", "--mode", "online"])
    config = sweep.config_from_args(args)
    assert (config.test_set, config.limit, config.modes) == ("demo", 3, ["online"])
    assert config.grid == {"max_num_seqs": [1, 4, 16], "decoding": ["greedy", "t0.7-p0.9"]}
    assert [o.max_num_seqs for o in config.engine_options()] == [1, 4, 16]
    assert [d.label for d in config.decodings()] == ["greedy", "t0.7-p0.9"]


def test_grid_values_and_errors():
    grid = sweep.parse_grid(["max_num_seqs=default,8", "enable_prefix_caching=true,false", "dtype=bfloat16"])
    config = sweep.SweepConfig(grid=grid)
    assert [(o.max_num_seqs, o.enable_prefix_caching) for o in config.engine_options()] == [
        (None, True), (None, False), (8, True), (8, False)]
    assert {o.dtype for o in config.engine_options()} == {"bfloat16"}
    with pytest.raises(ValueError, match="unknown grid key max_seqs"):
        sweep.SweepConfig(grid={"max_seqs": [4]})
    with pytest.raises(ValueError, match="unknown decoding 'beam'"):
        sweep.SweepConfig(grid={"decoding": ["beam"]})
    with pytest.raises(ValueError, match="unknown mode batch"):
        sweep.SweepConfig(modes=["batch"])
    with pytest.raises(ValueError, match="--grid 'decoding'"):
        sweep.parse_grid(["decoding"])
    assert sweep.main(["demo", "--baselines", "pytorch"]) == 2
    assert sweep.main(["demo", "--dtype", "float16"]) == 2  # the one dtype rule of every entry point


def test_engine_flags_are_one_value_grid_entries():
    config = sweep.config_from_args(sweep.parse_args(["demo", "-dp", "2", "--max-num-seqs", "8",
                                                      "--grid", "max_num_seqs=1,4"]))
    assert config.grid == {"data_parallel_size": [2], "max_num_seqs": [1, 4]}  # --grid wins
    assert sweep.config_from_args(sweep.parse_args(["demo"])).grid == {}  # defaults add nothing


def test_plan_builds_each_engine_once():
    config = sweep.SweepConfig(grid={"max_num_seqs": [None, 4], "decoding": ["greedy", "t0.7"]},
                               concurrency=[1, 4], baselines=["builtin", "official"])
    jobs = sweep.plan(config, num_utterances=6)
    groups = [key for key, _ in itertools.groupby(jobs, key=lambda j: (j.system, j.engine))]
    assert len(groups) == len(set(groups)) == 5  # 2 engines x (ours, built-in) + the official model
    assert {j.engine.architecture for j in jobs if j.system == "builtin"} == {sweep.BUILTIN_ARCHITECTURE}
    per_engine = 2 * (1 + 2)  # decodings x (offline + 2 concurrencies)
    assert len([j for j in jobs if j.system == "vllm"]) == 2 * per_engine
    official = [j for j in jobs if j.system == "official"]
    assert {j.decoding.label for j in official} == {"greedy"}  # no sampling in the official decoder
    assert sorted(j.concurrency for j in official) == [1, 4]  # batch 1 and the grid's max_num_seqs


def test_hotword_weight_grid_multiplies_the_decodings():
    config = sweep.SweepConfig(grid={"decoding": ["greedy", "beam3"], "hotword_weight": ["0", "2.5"]}, modes=["offline"])
    assert [(d.label, d.hotword_weight) for d in config.decodings()] == [
        ("greedy", 0.0), ("greedy", 2.5), ("beam3", 0.0), ("beam3", 2.5)]
    data = TestSet("s", "zh", "cer", "s", None, [], hotwords=(("上海", 1.0), ("北京", 1.0)))
    jobs = [with_set_list(job, data) for job in sweep.plan(config, 4)]
    assert [job.decoding.label for job in jobs] == ["greedy", "greedy-hw2.5x2", "beam3", "beam3-hw2.5x2"]
    assert [job.decoding.hotwords for job in jobs][:2] == [(), data.hotwords]  # weight 0: the baseline, no list
    assert config.engine_keys == [] and len(config.engine_options()) == 1  # decoded per request: one engine
    with pytest.raises(UserError, match="hotword_weight values must be numbers >= 0"):
        sweep.SweepConfig(grid={"hotword_weight": ["-1"]})


def test_sweep_rows_carry_biasing_figures():
    """``summarize`` with the set's words: B-CER / U-CER and recall per configuration (hand-counted)."""
    references = {"a": "他坐火车去上海开会", "b": "我们开会"}
    transcripts = [Transcript("a", "他坐火车去尚海开会", duration_s=1.0, latency_s=0.1),
                   Transcript("b", "我们北京开会", duration_s=1.0, latency_s=0.1)]
    summary, rows = summarize(transcripts, references, 1.0, "cer", NormalizerOptions(), hotwords=("上海", "北京"))
    assert summary["b_cer"] == pytest.approx((1 + 2) / 2)  # 尚 for 上; 北京 inserted
    assert summary["u_cer"] == pytest.approx(0 / 11)
    assert summary["hotword_recall"] == 0.0 and summary["hotword_precision"] == 0.0
    assert [row["b_n"] for row in rows] == [2, 0]
    plain, _ = summarize(transcripts, references, 1.0, "cer", NormalizerOptions())
    assert plain["b_cer"] is None and plain["error_rate"] == summary["error_rate"]


@pytest.mark.parametrize("argv, says", [
    (["--grid", "decoding"], "error: --grid 'decoding': expected KEY=VALUE[,VALUE...]\n"),
    (["--grid", "decoding=beam"], "error: unknown decoding 'beam'"),
    (["--config", "nowhere.toml"], "error: nowhere.toml: no such config file"),
])
def test_the_users_mistakes_are_one_line_before_anything_runs(argv, says, capsys):
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(says) and len(err.strip().splitlines()) == 1 and "Traceback" not in err
