"""Train the embedded ``trained`` model: a tiny FireRedASR-LLM that really transcribes synthesized Mandarin.

    python -m testkit.train_tiny --output-dir fireredasr_vllm/trained

CPU only, one thread, deterministic (fixed seeds and data order; same bytes on every run), ~7 minutes:

1. data: the bundled demo sentences + ``eval/demo/corpus.txt`` are the training set; ``heldout.txt``
   (shipped with the model) is never trained on. espeak-ng ``cmn`` speaks each training sentence in the
   bundled clips' voice and in random voices (speed, pitch, tempo, white noise);
2. start: ``tiny.build_official_checkpoint`` (random weights, official layout) with a character-level
   byte-BPE tokenizer and ``cmvn.ark`` from the training features;
3. "pretrained" parts, as the release starts from a trained Qwen2 and a trained AED encoder: the tiny
   Qwen2 learns the training sentences as a language model, and the official Conformer encoder learns
   the synthesizer's phonemes with a CTC head (thrown away afterwards);
4. the OFFICIAL ``FireRedAsrLlm`` (``from_args`` with ``freeze_encoder=1``: adapter + PEFT LoRA trained,
   Qwen2 base and encoder frozen) is trained with the official prompt and loss masking
   (``LlmTokenizerWrapper.preprocess_texts``) and the official speech/text merge;
5. the shipped files are loaded back through the official code and scored (greedy CER) on the bundled
   clips (trained on) and the held-out sentences; ``TRAINING.json`` records recipe, seeds, corpus
   hashes, losses, times, CER and the sha256 of every shipped file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np
import torch
from fireredasr.data.asr_feat import KaldifeatFbank  # the official code (the `reference` extra): what is trained
from fireredasr.tokenizer.llm_tokenizer import LlmTokenizerWrapper
from transformers import AutoTokenizer, Qwen2ForCausalLM

from eval.bundled import DEMO_CLIPS, DEMO_DIR, read_sentences
from eval.official import OfficialModel
from fireredasr_vllm import LLM_DIR
from fireredasr_vllm.audio import load_audio
from fireredasr_vllm.cli_args import add_renamed_argument
from fireredasr_vllm.constants import (END_OF_TEXT, FRAME_LENGTH_MS, FRAME_SHIFT_MS, IM_END, IM_START, INSTRUCTION,
                                       NUM_MEL_BINS, SAMPLE_RATE)
from fireredasr_vllm.convert import OFFICIAL_FILES, load_package, sha256
from fireredasr_vllm.resolve import TRAINED_DIR
from testkit.synth import synthesize
from testkit.tiny import TinySpec, build_official_checkpoint, save_tokenizer, text_hash, train_tokenizer

CORPUS = DEMO_DIR / "corpus.txt"
DEMO_SENTENCES = DEMO_DIR / "sentences.txt"
HELDOUT = "heldout.txt"  # held-out sentences (never trained on), shipped with the model
SHIPPED = (*OFFICIAL_FILES, HELDOUT)
POSITIONAL_TABLE = "encoder.positional_encoding.pe"
DEFAULT_VOICE = {"speed": 160, "pitch": 50, "tempo": 1.0, "snr_db": None}  # the bundled clips' voice
CHAT_WORDS = ("user", "assistant", "system")  # single tokens, as in Qwen2 (the loss mask finds "assistant")


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the trained weights."""

    spec: TinySpec = TinySpec(d_model=128, n_head=4, n_layers_enc=3, kernel_size=15, hidden_size=128,
                              intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, init_std=0.3, llm_init_range=0.02, lora_b_std=0.0,
                              eos_scale=1.0, seed=0)
    seed: int = 0
    threads: int = 1
    variants: int = 3  # voices per sentence: the bundled clips' voice + random ones
    speed: tuple[int, int] = (135, 185)
    pitch: tuple[int, int] = (30, 70)
    tempo: tuple[float, float] = (0.9, 1.15)
    snr_db: tuple[float, float] = (15.0, 40.0)
    lm_steps: int = 300
    lm_lr: float = 3e-3
    encoder_epochs: int = 4
    encoder_lr: float = 3e-3
    epochs: int = 20
    lr: float = 2e-3
    batch_frames: int = 3000  # fbank frames per batch; batches hold clips of similar length
    warmup_steps: int = 50
    clip_norm: float = 1.0
    dropout: float = 0.0  # every Dropout (official: 0.1 encoder, 0.05 LoRA); 0 learns faster on CPU


@dataclass
class Clip:
    text: str
    phonemes: str
    feats: torch.Tensor  # raw fbank, then CMVN-normalised, then (frozen) encoder output


# ----------------------------------------------------------------------------- data
def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def training_sentences() -> list[str]:
    """The bundled demo sentences (must be learned) followed by the corpus, without duplicates."""

    demo = [text for _, text in read_sentences(DEMO_SENTENCES)]
    return list(dict.fromkeys(demo + read_lines(CORPUS)))


def voices(recipe: Recipe, count: int) -> list[list[dict]]:
    """Per sentence: the default voice first, then seeded random speed/pitch/tempo/noise."""
    rng = random.Random(recipe.seed)
    rows = []
    for _ in range(count):
        row = [DEFAULT_VOICE]
        for _ in range(recipe.variants - 1):
            row.append({"speed": rng.randint(*recipe.speed), "pitch": rng.randint(*recipe.pitch),
                        "tempo": round(rng.uniform(*recipe.tempo), 3),
                        "snr_db": round(rng.uniform(*recipe.snr_db), 1)})
        rows.append(row)
    return rows


def speak(text: str, voice: dict, seed: int) -> np.ndarray:
    """int16 samples of ``text`` in ``voice``, with white noise at ``snr_db`` when given."""

    samples = synthesize(text, speed=voice["speed"], pitch=voice["pitch"], tempo=voice["tempo"])
    if voice["snr_db"] is None:
        return samples
    signal = samples.astype(np.float64)
    noise_std = math.sqrt(np.mean(signal**2) / 10 ** (voice["snr_db"] / 10))
    noisy = signal + np.random.default_rng(seed).normal(0.0, noise_std, len(signal))
    return np.clip(np.round(noisy), -32768, 32767).astype(np.int16)


def phonemes(text: str) -> str:
    """What espeak-ng ``cmn`` says for ``text`` as IPA symbols (without language switches, stress,
    tone digits, length marks and separators): the encoder's CTC targets."""
    ipa = subprocess.run(["espeak-ng", "-v", "cmn", "--ipa", "-q", text],
                         check=True, capture_output=True, text=True).stdout
    return "".join(c for c in re.sub(r"\([a-z]+\)", "", ipa) if not (c.isspace() or c.isdigit() or c in "ˈˌː._"))


def official_fbank(samples: np.ndarray) -> np.ndarray:
    """The official front end's fbank (``KaldifeatFbank``) of int16-valued samples."""
    return KaldifeatFbank(num_mel_bins=NUM_MEL_BINS, frame_length=FRAME_LENGTH_MS, frame_shift=FRAME_SHIFT_MS,
                          dither=0.0)((SAMPLE_RATE, samples))


def synthesize_corpus(sentences: list[str], recipe: Recipe) -> list[Clip]:
    """One clip (raw fbank) per sentence x voice."""
    clips = []
    for i, (text, row) in enumerate(zip(sentences, voices(recipe, len(sentences)))):
        phones = phonemes(text)
        for j, voice in enumerate(row):
            samples = speak(text, voice, seed=recipe.seed * 100_003 + i * 31 + j)
            clips.append(Clip(text, phones, torch.from_numpy(official_fbank(samples)).float()))
    return clips


# ----------------------------------------------------------------------------- starting checkpoint
def char_tokenizer(sentences: list[str]):
    """Byte-level BPE whose merges stop at characters: one token per Chinese character (as Qwen2 has
    for common ones), and the chat-template words as single tokens."""
    pieces = sorted(set("".join(sentences + [INSTRUCTION]))) + list(CHAT_WORDS)
    return train_tokenizer(pieces, vocab_size=8000)


def replace_tokenizer(tokenizer, llm_dir: Path) -> None:
    """Replace the tokenizer in ``llm_dir`` (saved as a Qwen2Tokenizer, like ``tiny.save_qwen2``)."""
    for path in llm_dir.glob("*token*"):
        path.unlink()
    save_tokenizer(tokenizer, llm_dir)


def build_start(work: Path, sentences: list[str], clips: list[Clip], recipe: Recipe) -> TinySpec:
    """Random official-layout checkpoint with our tokenizer, CMVN and ``freeze_encoder=1``."""

    tokenizer = char_tokenizer(sentences)
    # the builder trains a small tokenizer of its own (replaced below); the LLM is sized for ours
    spec = dataclasses.replace(recipe.spec, vocab_size=len(tokenizer) + 1, tokenizer_vocab=300)
    build_official_checkpoint(spec, work, cmvn_feats=torch.cat([c.feats for c in clips]).numpy())
    replace_tokenizer(tokenizer, work / LLM_DIR)
    package = load_package(work / "model.pth.tar", mmap=False)
    package["args"].freeze_encoder = 1
    torch.save(package, work / "model.pth.tar")
    return spec


# ----------------------------------------------------------------------------- training loops
def length_batches(lengths: list[int], batch_frames: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches of at most ``batch_frames`` padded frames."""
    batches, current = [], []
    for i in sorted(range(len(lengths)), key=lambda k: (lengths[k], k)):
        if current and lengths[i] * (len(current) + 1) > batch_frames:
            batches.append(current)
            current = []
        current.append(i)
    return batches + [current] if current else batches


def pad(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True),
            torch.tensor([t.size(0) for t in tensors]))


def fit(params: list, batches: list[list], batch_loss: Callable, epochs: int, lr: float, recipe: Recipe,
        seed: int, log, stage: str) -> list[float]:
    """AdamW, warmup then cosine decay, batches in a seeded order; returns the mean loss per epoch."""
    total = epochs * len(batches)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    rng = random.Random(seed)
    losses, step, started = [], 0, time.time()
    for epoch in range(epochs):
        order = batches[:]
        rng.shuffle(order)
        epoch_losses = []
        for batch in order:
            warmup = min(1.0, (step + 1) / recipe.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr * warmup * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = batch_loss(batch)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, recipe.clip_norm)
            optimizer.step()
            epoch_losses.append(loss.item())
            step += 1
        losses.append(float(np.mean(epoch_losses)))
        log(f"{stage} epoch {epoch + 1}/{epochs}: loss {losses[-1]:.3f} ({time.time() - started:.0f} s)")
    return losses


def set_dropout(model: torch.nn.Module, p: float) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p


def pretrain_llm(llm_dir: Path, sentences: list[str], recipe: Recipe) -> list[float]:
    """Full-weight LM training of the tiny Qwen2 on ``<|im_start|>assistant\\n{text}<|im_end|>``."""
    tokenizer = AutoTokenizer.from_pretrained(str(llm_dir))
    model = Qwen2ForCausalLM.from_pretrained(str(llm_dir), dtype=torch.float32)
    pad_id, eos_id = tokenizer.convert_tokens_to_ids(END_OF_TEXT), tokenizer.convert_tokens_to_ids(IM_END)
    for config in (model.config, model.generation_config):  # Qwen2's convention, with our tokenizer's ids
        config.bos_token_id, config.pad_token_id, config.eos_token_id = pad_id, pad_id, eos_id
    rows = [tokenizer.encode(f"{IM_START}assistant\n{text}{IM_END}") for text in sentences]
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lm_lr, weight_decay=0.01)
    rng = random.Random(recipe.seed + 1)
    losses = []
    model.train()
    for step in range(recipe.lm_steps):
        batch = rng.sample(rows, 32)
        input_ids, lengths = pad([torch.tensor(r) for r in batch])
        mask = torch.arange(input_ids.size(1))[None] < lengths[:, None]
        for group in optimizer.param_groups:
            group["lr"] = recipe.lm_lr * min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * step / recipe.lm_steps))
        loss = model(input_ids=input_ids, attention_mask=mask.long(), labels=input_ids.masked_fill(~mask, -100)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.save_pretrained(llm_dir, safe_serialization=True)
    return losses


def pretrain_encoder(encoder, clips: list[Clip], recipe: Recipe, log) -> list[float]:
    """CTC training of the official Conformer encoder on the synthesizer's phonemes.

    The released encoder is not random either: it comes from a trained FireRedASR-AED. This stands in
    for that, so the LLM stage starts from acoustic features worth attending to."""
    inventory = {p: i + 1 for i, p in enumerate(sorted({p for c in clips for p in c.phonemes}))}  # 0: blank
    head = torch.nn.Linear(encoder.odim, len(inventory) + 1)

    def batch_loss(batch):
        feats, lengths = pad([clips[i].feats for i in batch])
        out, out_lengths, _ = encoder(feats, lengths)
        targets = [torch.tensor([inventory[p] for p in clips[i].phonemes]) for i in batch]
        return torch.nn.functional.ctc_loss(
            head(out).log_softmax(-1).transpose(0, 1), torch.cat(targets), out_lengths,
            torch.tensor([len(t) for t in targets]), zero_infinity=True)

    set_dropout(encoder, recipe.dropout)
    encoder.train()
    for param in encoder.parameters():
        param.requires_grad = True
    batches = length_batches([c.feats.size(0) for c in clips], recipe.batch_frames)
    params = list(encoder.parameters()) + list(head.parameters())
    losses = fit(params, batches, batch_loss, recipe.encoder_epochs, recipe.encoder_lr, recipe,
                 recipe.seed + 2, log, "encoder (phoneme CTC)")
    encoder.eval()
    for param in encoder.parameters():
        param.requires_grad = False
    return losses


@torch.no_grad()
def encode(encoder, feats: torch.Tensor) -> torch.Tensor:
    """Frozen encoder output of one utterance (no padding, as at inference)."""
    out, _, _ = encoder(feats[None], torch.tensor([feats.size(0)]))
    return out[0]


def official_loss(model, encoder_outs, enc_lengths, input_ids, attention_mask, target_ids) -> torch.Tensor:
    """The official forward after the encoder (adapter -> speech/text merge -> Qwen2), with labels."""
    speech_features, speech_lens = model.encoder_projector(encoder_outs, enc_lengths)
    inputs_embeds = model.llm.get_input_embeddings()(input_ids)
    inputs_embeds, attention_mask, labels = model._merge_input_ids_with_speech_features(
        speech_features.to(inputs_embeds.dtype), inputs_embeds, input_ids, attention_mask,
        labels=target_ids, speech_lens=speech_lens)
    return model.llm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels).loss


def train_asr(model, tokenizer, clips: list[Clip], recipe: Recipe, log) -> list[float]:
    """The official FireRedASR-LLM objective on the frozen encoder's outputs: adapter + LoRA learn."""
    encoded = [encode(model.encoder, c.feats) for c in clips]

    def batch_loss(batch):
        encoder_outs, enc_lengths = pad([encoded[i] for i in batch])
        input_ids, attention_mask, target_ids, _ = LlmTokenizerWrapper.preprocess_texts(
            [clips[i].text for i in batch], tokenizer, max_len=128, decode=False)
        return official_loss(model, encoder_outs, enc_lengths, input_ids, attention_mask, target_ids)

    set_dropout(model, recipe.dropout)
    model.encoder_projector.train()
    model.llm.train()
    batches = length_batches([4 * e.size(0) for e in encoded], recipe.batch_frames)
    params = [p for p in model.parameters() if p.requires_grad]
    return fit(params, batches, batch_loss, recipe.epochs, recipe.lr, recipe, recipe.seed + 3, log, "FireRedASR-LLM")


# ----------------------------------------------------------------------------- scoring and shipping
def cer(references: list[str], hypotheses: list[str]) -> float:
    return float(jiwer.cer(references, hypotheses))


def score(official, items: list[tuple[str, np.ndarray]]) -> dict:
    """CER of official greedy decoding (one utterance at a time) on (text, float samples) items."""
    refs = [text for text, _ in items]
    hyps = [r["text"] for r in official.transcribe([samples for _, samples in items])]
    return {"cer": round(cer(refs, hyps), 4),
            "errors": [{"ref": r, "hyp": h} for r, h in zip(refs, hyps) if r != h]}


def bundled_clips() -> list[tuple[str, np.ndarray]]:

    return [(text, load_audio(DEMO_CLIPS / f"{utt_id}.flac")) for utt_id, text in read_sentences(DEMO_SENTENCES)]


def save_release(model, out_dir: Path) -> None:
    """``model.pth.tar`` with the released keys: encoder.*, encoder_projector.*, LoRA A/B. The constant
    positional table (5 MB) is left out: the official model and vLLM both rebuild it."""

    package = load_package(out_dir / "model.pth.tar", mmap=False)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()
             if (k.startswith(("encoder.", "encoder_projector.")) or ".lora_" in k) and k != POSITIONAL_TABLE}
    missing = set(package["model_state_dict"]) - set(state) - {POSITIONAL_TABLE}
    if missing:
        raise RuntimeError(f"trained model lacks released keys: {sorted(missing)[:5]}")
    torch.save({"args": package["args"], "model_state_dict": state}, out_dir / "model.pth.tar")


def shipped_files(model_dir: Path) -> dict[str, str]:
    """sha256 of every shipped file, by path relative to ``model_dir``."""
    return {p.relative_to(model_dir).as_posix(): sha256(p) for p in sorted(model_dir.rglob("*"))
            if p.is_file() and p.name != "TRAINING.json"}


def install(work: Path, out_dir: Path) -> None:
    """Move the shipped files from ``work`` into ``out_dir``, replacing older ones."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED + ("TRAINING.json",):
        target = out_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        shutil.move(str(work / name), str(target))


def train(out_dir: Path, recipe: Recipe = Recipe(), log=print) -> dict:
    """Run the whole recipe; write the official layout + TRAINING.json into ``out_dir``."""

    started, cpu_started = time.time(), time.process_time()
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    torch.use_deterministic_algorithms(True)
    sentences, heldout = training_sentences(), read_lines(TRAINED_DIR / HELDOUT)
    if set(heldout) & set(sentences):
        raise ValueError(f"held-out sentences also in training: {sorted(set(heldout) & set(sentences))[:3]}")
    clips = synthesize_corpus(sentences, recipe)
    audio_seconds = sum(c.feats.size(0) for c in clips) / 100
    log(f"synthesized {len(clips)} clips ({audio_seconds:.0f} s of speech) in {time.time() - started:.0f} s")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec = build_start(work, sentences, clips, recipe)
        shutil.copy(TRAINED_DIR / HELDOUT, work / HELDOUT)
        lm_losses = pretrain_llm(work / LLM_DIR, sentences, recipe)
        log(f"LM pretraining: loss {lm_losses[0]:.2f} -> {lm_losses[-1]:.2f} ({time.time() - started:.0f} s)")
        official = OfficialModel.load(work)
        if official.load_result.unexpected_keys:
            raise RuntimeError(f"keys the official model lacks: {official.load_result.unexpected_keys[:5]}")
        for clip in clips:
            clip.feats = torch.from_numpy(official.feat_extractor.cmvn(clip.feats.numpy())).float()
        encoder_losses = pretrain_encoder(official.model.encoder, clips, recipe, log)
        asr_losses = train_asr(official.model, official.tokenizer, clips, recipe, log)
        seconds, cpu_seconds = time.time() - started, time.process_time() - cpu_started
        save_release(official.model, work)

        shipped = OfficialModel.load(work)  # score what is shipped, through the official code
        heldout_items = [(text, speak(text, DEFAULT_VOICE, 0) / 32768.0) for text in heldout]
        results = {"train_bundled": score(shipped, bundled_clips()), "heldout": score(shipped, heldout_items)}
        log(f"CER: bundled clips (trained on) {results['train_bundled']['cer']:.2%}, "
            f"held-out sentences {results['heldout']['cer']:.2%}")
        record = {
            "command": "python -m testkit.train_tiny",
            "recipe": json.loads(json.dumps(dataclasses.asdict(recipe) | {"spec": dataclasses.asdict(spec)})),
            "seeds": {"recipe": recipe.seed, "tiny_spec": spec.seed},
            "torch": torch.__version__,
            "corpus": {"train_sentences": len(sentences), "train_sha256": text_hash(sentences),
                       "corpus_txt_sha256": sha256(CORPUS), "heldout_sentences": len(heldout),
                       "heldout_sha256": text_hash(heldout), "clips": len(clips),
                       "audio_seconds": round(audio_seconds, 1)},
            "losses": {"lm": [round(lm_losses[0], 4), round(lm_losses[-1], 4)],
                       "encoder_ctc_per_epoch": [round(x, 4) for x in encoder_losses],
                       "asr_per_epoch": [round(x, 4) for x in asr_losses]},
            "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1),
            "cer": {"train_bundled": results["train_bundled"]["cer"], "heldout": results["heldout"]["cer"]},
            "errors": {name: result["errors"] for name, result in results.items()},
            "files": shipped_files(work),
        }
        record["size_bytes"] = sum((work / name).stat().st_size for name in record["files"])
        (work / "TRAINING.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        install(work, out_dir)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_renamed_argument(parser, "--output-dir", "--out", type=Path, default=TRAINED_DIR, metavar="DIR",
                         help="output directory (official layout)")
    args = parser.parse_args(argv)
    record = train(args.output_dir.resolve())
    print(json.dumps({k: record[k] for k in ("train_seconds", "train_cpu_seconds", "cer", "size_bytes")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
