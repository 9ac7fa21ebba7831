"""Fine-tune the span model on question/passage examples, resumably.

The batch order is a function of the seed alone, and a checkpoint holds the weights,
the optimiser, the schedule, the step and the random state, so a run stopped at any
checkpoint (`--max-minutes`, a crash, the end of a session) and resumed with `--resume`
ends with the same weights as one that never stopped. Training runs on the CPU (two
threads here: about 8 examples/s at 160 wordpieces) or on a GPU when there is one.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from service.encoding import Encoded, WindowEncoder, load_tokenizer, pad_batch
from training.model import SpanModel, encoder_path, span_loss
from training.synthetic import Example

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.pt"
SUMMARY = "train.json"
BUCKET = 64  # batches whose examples are sorted by length together (less padding)


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Everything that decides the weights a run ends with."""

    data: tuple[str, ...]
    data_sha1: str
    seed: int = 0
    max_len: int = 128
    batch_size: int = 32
    lr: float = 1e-4
    warmup: float = 0.06
    epochs: float = 1.0
    max_examples: int | None = None
    init: str | None = None  # weights of an earlier run to start from (a second stage)


@dataclass(slots=True)
class Featurized:
    window: Encoded
    start: int
    end: int


@dataclass(slots=True)
class Progress:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def read_examples(paths: Sequence[Path]) -> tuple[list[Example], str]:
    """Every example of the JSONL files, and a hash of their bytes (for the manifest)."""
    digest = hashlib.sha1()
    examples = []
    for path in paths:
        raw = Path(path).read_bytes()
        digest.update(raw)
        examples.extend(Example.from_json(line) for line in raw.decode().splitlines() if line)
    return examples, digest.hexdigest()


def featurize(ex: Example, encoder: WindowEncoder) -> Featurized | None:
    """The example as one window with its answer's wordpiece positions (0, 0 when it has
    none); None when the answer cannot be placed in a window."""
    q = encoder.question_ids(ex.question)
    ids, offsets = encoder.passage_pieces(ex.context)
    budget = encoder.budget(q)
    h = int(hashlib.sha1(ex.id.encode()).hexdigest()[:8], 16)
    if ex.answer_start >= 0:
        a_start, a_end = ex.answer_start, ex.answer_start + len(ex.answer)
        first = next((k for k, (s, e) in enumerate(offsets) if e > a_start), None)
        last = next((k for k in range(len(offsets) - 1, -1, -1) if offsets[k][0] < a_end), None)
        if first is None or last is None or last < first:
            return None
        lo, hi = max(0, last - budget + 1), min(first, max(0, len(ids) - budget))
        if lo > hi:
            return None
        cut = lo + h % (hi - lo + 1)
    else:
        cut = h % (max(0, len(ids) - budget) + 1)
    window = encoder.assemble(q, ids[cut:cut + budget], offsets[cut:cut + budget])
    if ex.answer_start < 0:
        return Featurized(window, 0, 0)
    shift = len(q) + 2 - cut
    return Featurized(window, first + shift, last + shift)


def batch_order(n: int, batch_size: int, lengths: Sequence[int], seed: int,
                epochs: float) -> list[list[int]]:
    """Batches of example indexes for the whole run, decided by the seed alone: each
    epoch is a fresh shuffle; within a bucket of BUCKET batches examples of similar
    length are batched together, and the batches are shuffled again."""
    rng = random.Random(seed)
    total = math.ceil(n * epochs)
    order: list[int] = []
    while len(order) < total:
        perm = list(range(n))
        rng.shuffle(perm)
        order.extend(perm)
    order = order[:total]
    batches = []
    span = BUCKET * batch_size
    for b in range(0, len(order), span):
        chunk = sorted(order[b:b + span], key=lambda k: lengths[k])
        group = [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
        rng.shuffle(group)
        batches.extend(group)
    return batches


def _tensors(items: Sequence[Featurized], device) -> tuple[dict, torch.Tensor, torch.Tensor]:
    inputs = {k: torch.from_numpy(v).to(device) for k, v in pad_batch([f.window for f in items]).items()}
    starts = torch.tensor([f.start for f in items], device=device)
    ends = torch.tensor([f.end for f in items], device=device)
    return inputs, starts, ends


def train(config: TrainConfig, examples: Sequence[Example], out: Path, *, resume: bool = False,
          max_minutes: float | None = None, threads: int = 2, device: str = "auto",
          checkpoint_every: int = 200, log_every: int = 20,
          log: Callable[[str], None] = print) -> dict:
    """Train (or resume) a run into `out`; returns its summary. Stops early, with a
    checkpoint, after `max_minutes`; the summary says whether it finished."""
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    encoder = WindowEncoder(load_tokenizer(encoder_path() / "tokenizer.json"), config.max_len)
    rows = [featurize(ex, encoder) for ex in examples[:config.max_examples]]
    data = [r for r in rows if r is not None]
    log(f"{len(data)} training windows ({len(rows) - len(data)} examples dropped: answer "
        f"outside any window), device {dev}")
    batches = batch_order(len(data), config.batch_size, [len(f.window.input_ids) for f in data],
                          config.seed, config.epochs)
    torch.manual_seed(config.seed)
    model = SpanModel.from_encoder()
    if config.init:
        model.load_state_dict(torch.load(config.init, map_location="cpu"))
    # The word embeddings stay as pretrained: half the weights, and a few thousand
    # questions cannot improve what the encoder learnt about rare words.
    model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    model.to(dev)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=config.lr, weight_decay=0.01)
    warm = max(1, int(len(batches) * config.warmup))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min((step + 1) / warm,
                                    max(0.0, (len(batches) - step) / max(1, len(batches) - warm))))
    step, progress = 0, Progress()
    ckpt_path = out / CHECKPOINT
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt["config"] != asdict(config):
            raise ValueError(f"{ckpt_path} was made with other settings; train into a new "
                             "--out directory or drop --resume")
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimiser"])
        schedule.load_state_dict(ckpt["schedule"])
        torch.set_rng_state(ckpt["rng"])
        step = ckpt["step"]
        progress = Progress(ckpt["losses"], ckpt["seconds"])
        log(f"resumed at step {step} of {len(batches)}")

    def save_checkpoint() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"config": asdict(config), "model": model.state_dict(),
                    "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                    "rng": torch.get_rng_state(), "step": step, "losses": progress.losses,
                    "seconds": progress.seconds}, tmp)
        tmp.replace(ckpt_path)

    model.train()
    started = began = time.perf_counter()
    window_loss, window_n, window_steps, t_log = 0.0, 0, 0, time.perf_counter()
    stopped = False
    while step < len(batches):
        inputs, starts, ends = _tensors([data[k] for k in batches[step]], dev)
        start_logits, end_logits = model(**inputs)
        loss = span_loss(start_logits, end_logits, starts, ends)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        step += 1
        window_loss += loss.item()
        window_n += len(starts)
        window_steps += 1
        if step % log_every == 0 or step == len(batches):
            elapsed = time.perf_counter() - t_log
            progress.losses.append(round(window_loss / window_steps, 4))
            log(f"step {step}/{len(batches)} loss {window_loss / window_steps:.3f} "
                f"{window_n / elapsed:.1f} ex/s")
            window_loss, window_n, window_steps, t_log = 0.0, 0, 0, time.perf_counter()
        if step % checkpoint_every == 0 or step == len(batches):
            progress.seconds += time.perf_counter() - started
            started = time.perf_counter()
            save_checkpoint()
            if max_minutes is not None and step < len(batches) and \
                    (time.perf_counter() - began) / 60 > max_minutes:
                stopped = True
                log(f"stopped at step {step} after {max_minutes} minutes; rerun with --resume")
                break
    finished = step == len(batches)
    if finished:
        weights = out / WEIGHTS
        tmp = weights.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(weights)
    summary = {"config": asdict(config), "steps": step, "total_steps": len(batches),
               "finished": finished, "stopped_early": stopped, "windows": len(data),
               "train_seconds": round(progress.seconds, 1), "losses": progress.losses,
               "torch": torch.__version__, "device": str(dev)}
    (out / SUMMARY).write_text(json.dumps(summary, indent=1))
    return summary


def predict(model: SpanModel, windows: Sequence[Encoded], batch_size: int = 64
            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Start and end logits of each window (unpadded), with the model in eval mode."""
    model.eval()
    starts, ends = [], []
    with torch.no_grad():
        for b in range(0, len(windows), batch_size):
            chunk = windows[b:b + batch_size]
            inputs = {k: torch.from_numpy(v) for k, v in pad_batch(list(chunk)).items()}
            s, e = model(**inputs)
            for k, w in enumerate(chunk):
                n = len(w.input_ids)
                starts.append(s[k, :n].numpy())
                ends.append(e[k, :n].numpy())
    return starts, ends
