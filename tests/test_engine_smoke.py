

def test_engine_transcribes_bundled_clip(engine, demo_clips):
    result = engine.transcribe(demo_clips[0])
    assert result.ok and result.output_tokens > 0 and result.prompt_tokens > result.output_tokens // 2
