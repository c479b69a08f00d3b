"""Seeded sampling on a full batch: every prefill that vLLM would split over steps (a batch's prompts over
max_num_batched_tokens) rewinds a seeded request's generator, which a CPU generator cannot do; the facade
keeps prefills whole on CPU so such a batch transcribes and the engine stays up."""

from fireredasr_engine.options import parse_decoding


def test_seeded_sampling_over_one_step_of_prompts_keeps_engine_up_and_reproduces(engine, demo_clips):
    twice = list(demo_clips) * 2  # ~80 prompt tokens each: 60 prompts are more than one 2048-token step
    results = engine.transcribe_many(twice, parse_decoding("t0.7-p0.9"))  # seed 0 on every request
    assert [r.error for r in results if r.error] == []
    assert sum(r.prompt_tokens for r in results) > 2048  # a step could not have held every prefill
    first, again = results[:len(demo_clips)], results[len(demo_clips):]
    assert [r.text for r in first] == [r.text for r in again] and all(r.text for r in first)
    assert engine.transcribe(demo_clips[0]).ok  # and the engine is still up
