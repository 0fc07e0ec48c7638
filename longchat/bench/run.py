"""Run a task over lengths and samples through a profile's engine, optionally against transformers.

For each length: every sample gets a fresh sequence (the prompts share their first line, and the
engine would otherwise reuse its cached prefix and time a shorter prefill), then one peak-RSS
figure covers the whole length. The transformers comparison runs after all of ours, so its model
weights and activations never show up in our memory figures; it times ours again on the same
prompt right before transformers, so both see the same machine load.
"""

from __future__ import annotations

import os
import platform
import random
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from longchat.bench.base import Task
from longchat.bench.flops import peak_matmul_flops
from longchat.timing import sync
from longchat.errors import ConfigError, InputError
from longchat.runtime.generate import Sampling
from longchat.sysinfo import peak_rss_mb, reset_peak_rss

Note = Callable[[str], None]

_LENGTH = re.compile(r"(\d+(?:\.\d+)?)([km]?)")
_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024}


def parse_lengths(spec: str) -> list[int]:
    """Parse "1k,2k,1500,8k" into [1024, 2048, 1500, 8192] (k = 1024, m = 1024**2); repeats dropped."""
    lengths: list[int] = []
    for raw in spec.split(","):
        item = raw.strip().lower()
        match = _LENGTH.fullmatch(item)
        value = float(match.group(1)) * _UNITS[match.group(2)] if match else 0
        if not match or value < 1 or value != int(value):
            raise ConfigError(
                f"--lengths: {raw.strip()!r} is not a token count; give positive integers with an "
                f"optional k (x1024) or m suffix, comma-separated, e.g. 1k,2k,1500,8k"
            )
        if int(value) not in lengths:
            lengths.append(int(value))
    return lengths


def format_length(n: int) -> str:
    """1024 -> "1k", 1536 -> "1.5k", 1500 -> "1500"."""
    for suffix, unit in (("m", 1024 * 1024), ("k", 1024)):
        if n >= unit and (n * 2) % unit == 0:
            return f"{n / unit:g}{suffix}"
    return str(n)


def parse_samples(spec: str, lengths: list[int]) -> dict[int, int]:
    """"5" -> 5 prompts at every length; "5,16k:20,32k:20" -> 20 at 16k and 32k, 5 elsewhere."""
    default, counts = None, {}
    for raw in str(spec).split(","):
        item = raw.strip()
        length, _, count = item.rpartition(":")
        if not count.isdigit() or int(count) < 1:
            raise ConfigError(f"--samples: {item!r} is not a count; give N or LENGTH:N, comma-separated, "
                              f"e.g. 5 or 5,16k:20,64k:3 (N >= 1)")
        if length:
            counts[parse_lengths(length)[0]] = int(count)
        else:
            default = int(count)
    stray = sorted(set(counts) - set(lengths))
    if stray:
        raise ConfigError(f"--samples: {format_length(stray[0])} is not one of the --lengths")
    return {n: counts.get(n, default or 5) for n in lengths}


def depths(samples: int) -> list[float]:
    """Needle depths spread evenly over [0, 1]: 5 samples -> 0, .25, .5, .75, 1; one -> the middle."""
    if samples == 1:
        return [0.5]
    return [i / (samples - 1) for i in range(samples)]


@dataclass
class SampleResult:
    """One prompt: where the answer was, what came back, and how fast."""

    length: int
    index: int
    depth: float
    prompt_tokens: int
    expected: Any
    got: Any
    ok: bool
    answer: str
    new_tokens: int
    prefill_s: float
    prefill_tok_s: float
    decode_s: float
    decode_tok_s: float
    seconds: float                                      # end to end, compression included
    token_ids: list[int] = field(default_factory=list)  # the generated ids
    compress_s: float = 0.0       # with [compress] on: seconds spent compressing the context
    context_tokens: int = 0       # the context's tokens before compression ...
    compressed_tokens: int = 0    # ... and after
    prefill_gflop: float = 0.0    # weight matmuls + attention asked for (see bench.flops)

    @property
    def prefill_gflop_s(self) -> float:
        return self.prefill_gflop / self.prefill_s if self.prefill_s > 0 else 0.0


@dataclass
class HFComparison:
    """Plain `transformers` generate on the first sample's prompt of one length, and ours run
    on the same prompt just before it: on a busy machine only runs adjacent in time compare."""

    prompt_tokens: int
    prefill_s: float        # generate(max_new_tokens=1)
    prefill_tok_s: float
    decode_s: float         # first to last next-token step of generate(16 tokens), timed inside it
    decode_tok_s: float
    decode_tok_s_subtracted: float  # 15 / (generate(16) - generate(1)): noise-dominated, kept for reference
    peak_rss_mb: float
    token_ids: list[int]    # its greedy tokens
    answer: str
    ours_prefill_tok_s: float
    ours_decode_tok_s: float
    agree: int              # leading tokens equal to ours
    compared: int           # tokens compared (ours may stop early at a stop token)

    @property
    def prefill_ratio(self) -> float | None:
        return _ratio(self.ours_prefill_tok_s, self.prefill_tok_s)

    @property
    def decode_ratio(self) -> float | None:
        return _ratio(self.ours_decode_tok_s, self.decode_tok_s)


@dataclass
class LengthResult:
    """One length: accuracy, median speeds over its samples, peak memory, the comparison."""

    length: int
    status: str                       # "ok" or "skipped (window N)"
    samples: list[SampleResult] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    hf: HFComparison | None = None
    peak_gflop_s: float = 0.0         # the device's matmul rate, for MFU

    @property
    def mfu(self) -> float | None:
        """Median achieved prefill FLOP/s over the peak matmul FLOP/s."""
        rate = self.median("prefill_gflop_s")
        return rate / self.peak_gflop_s if rate and self.peak_gflop_s else None

    @property
    def ran(self) -> bool:
        return self.status == "ok"

    @property
    def correct(self) -> int:
        return sum(s.ok for s in self.samples)

    @property
    def prompt_tokens(self) -> int:
        return int(statistics.median(s.prompt_tokens for s in self.samples)) if self.samples else 0

    def median(self, key: str) -> float:
        # A reply that stopped after one token has no decode steps: leave it out, not as 0.
        values = [getattr(s, key) for s in self.samples if getattr(s, key) > 0]
        return statistics.median(values) if values else 0.0

    def summary(self) -> dict:
        out = {"length": self.length, "status": self.status}
        if not self.ran:
            return out
        if any(s.compress_s for s in self.samples):
            out["compress"] = {"seconds": round(self.median("compress_s"), 2),
                               "ratio": round(statistics.median(s.compressed_tokens / s.context_tokens
                                                                for s in self.samples), 4),
                               "tok_s": round(statistics.median(s.context_tokens / s.compress_s
                                                                for s in self.samples), 1),
                               "end_to_end_s": round(self.median("seconds"), 2)}
        out.update(prompt_tokens=self.prompt_tokens, correct=self.correct, total=len(self.samples),
                   accuracy=round(self.correct / len(self.samples), 3),
                   prefill_tok_s=round(self.median("prefill_tok_s"), 1),
                   decode_tok_s=round(self.median("decode_tok_s"), 2), peak_rss_mb=round(self.peak_rss_mb, 1),
                   prefill_gflop_s=round(self.median("prefill_gflop_s"), 1),
                   mfu=None if self.mfu is None else round(self.mfu, 3))
        if self.hf:
            out["hf"] = {k: v for k, v in asdict(self.hf).items() if k not in ("token_ids", "answer")}
            out["hf"].update(prefill_ratio=self.hf.prefill_ratio, decode_ratio=self.hf.decode_ratio)
        return out


def _ratio(ours: float, theirs: float) -> float | None:
    return round(ours / theirs, 3) if ours > 0 and theirs > 0 else None


@dataclass
class BenchResult:
    task: str
    settings: dict
    machine: dict
    lengths: list[LengthResult]

    def as_dict(self) -> dict:
        """Everything, JSON-ready: settings, machine, per-length summaries, per-sample records."""
        samples = []
        for lr in self.lengths:
            for s in lr.samples:
                record = asdict(s)
                if lr.hf and s.index == 0:  # the comparison ran on each length's first prompt
                    record["hf"] = asdict(lr.hf)
                samples.append(record)
        return {"task": self.task, "settings": self.settings, "machine": self.machine,
                "lengths": [lr.summary() for lr in self.lengths], "samples": samples}


def machine_info(runner) -> dict:
    """What the numbers depend on: versions, threads, CPU, device, model and profile."""
    import transformers

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    model = runner.model
    return {
        "python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__, "device": str(model.device), "dtype": str(model.decoder.dtype),
        "weights": getattr(model.decoder, "weight_format", "auto"),
        "model": model.name, "model_path": str(model.path), "model_load_s": round(model.load_s, 2),
        "profile": runner.profile.name, "strategy": runner.profile.context.strategy, "window": runner.window,
        "prefill_chunk": runner.profile.context.prefill_chunk,
        # Other processes on the machine skew every speed figure; the load average shows it.
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
    }


def overrides_for(profile_spec: str, overrides: list[str]) -> list[str]:
    """The `--set` overrides that apply to one profile of a comparison: `infllm.topk=8` only
    reaches profiles whose strategy is infllm; section overrides reach every profile."""
    from longchat.context.registry import strategies
    from longchat.profile import load_profile

    known = strategies()
    strategy = load_profile(profile_spec).context.strategy
    kept = []
    for text in overrides:
        section = text.split("=", 1)[0].split(".")[0].strip()
        if section in known and section != strategy:
            continue
        kept.append(text)
    return kept


def run_profiles(profiles: list[str], task: Task, lengths: list[int], *, model: str | None = None,
                 device: str | None = None, overrides: list[str] = (), note: Note = lambda m: None,
                 **kw) -> list[BenchResult]:
    """`run_task` for each profile in turn, on one loaded model and the same prompts."""
    from longchat.api import open_runner

    if not profiles:
        raise ConfigError("--profile: name at least one profile")
    loaded, plans, results = None, {}, []
    for spec in profiles:
        runner = open_runner(spec, model, device=device, overrides=overrides_for(spec, list(overrides)),
                             note=note, loaded=loaded)
        loaded = runner.model
        results.append(run_task(runner, task, lengths, plans=plans, note=note, **kw))
    return results


def run_task(runner, task: Task, lengths: list[int], *, samples: int | dict[int, int] = 5, seed: int = 0,
             vs_transformers: bool = False, on_sample: Callable[[SampleResult], None] | None = None,
             on_hf: Callable[[LengthResult], None] | None = None, note: Note = lambda m: None,
             plans: dict | None = None) -> BenchResult:
    """Run `task` at each length (prompt + reply tokens), `samples` prompts each, greedy.

    A length over the profile's window is recorded as skipped, not run. `plans` caches the
    prompts by length, so several profiles are judged on exactly the same ones.
    """
    counts = samples if isinstance(samples, dict) else {n: samples for n in lengths}
    if min(counts.values(), default=1) < 1:
        raise ConfigError(f"--samples must be >= 1, got {min(counts.values())}")
    sampling = Sampling(max_new_tokens=task.max_new_tokens, temperature=0.0)
    tokenizer, engine = runner.tokenizer, runner.engine
    machine = machine_info(runner)
    compressor = None
    if runner.profile.compress.on:
        from longchat import compress

        if task.split is None:
            raise ConfigError(f"task {task.name} cannot be compressed (it does not mark its context)")
        compressor = compress.compressor_for(runner, note=note)
        machine["compress"] = {k: v for k, v in vars(runner.profile.compress).items()}
    _warm_up(engine, tokenizer)
    # Every prompt is built before the first is run, so a bad length fails in seconds, not minutes.
    plans = {} if plans is None else plans
    for n in lengths:
        if n <= runner.window and n not in plans:
            plans[n] = build_prompts(task, tokenizer, n, counts[n], seed)
    peak = peak_matmul_flops(runner.model.device, runner.model.decoder.dtype) / 1e9
    machine["peak_matmul_gflop_s"] = round(peak, 1)
    results: list[LengthResult] = []
    for length in lengths:
        if length > runner.window:
            results.append(LengthResult(length, f"skipped (window {runner.window})"))
            note(f"{task.name} {format_length(length)}: skipped, longer than the window ({runner.window} tokens)")
            continue
        result = LengthResult(length, "ok", peak_gflop_s=peak)
        reset_peak_rss()
        for index, (depth, prompt, expected) in enumerate(plans[length]):
            engine.reset()
            start = time.perf_counter()
            squeezed = compress_prompt(compressor, task, tokenizer, prompt) if compressor else None
            if squeezed:
                prompt = squeezed[0]
            ids = list(engine.generate(prompt, sampling))
            seconds = time.perf_counter() - start
            text = tokenizer.decode(ids, skip_special_tokens=True)
            st = engine.stats
            sample = SampleResult(
                length=length, index=index, depth=round(depth, 4), prompt_tokens=len(prompt), expected=expected,
                got=task.parse(text), ok=task.score(text, expected), answer=text, new_tokens=st.new_tokens,
                prefill_s=round(st.prefill_s, 3), prefill_tok_s=round(st.prefill_tok_s, 1),
                decode_s=round(st.decode_s, 3), decode_tok_s=round(st.decode_tok_s, 2), seconds=round(seconds, 2),
                token_ids=ids, prefill_gflop=round(st.prefill_flops / 1e9, 3),
            )
            if squeezed:
                r = squeezed[1]
                sample.compress_s, sample.context_tokens, sample.compressed_tokens = \
                    round(r.seconds, 3), r.tokens_in, r.tokens_out
            result.samples.append(sample)
            if on_sample:
                on_sample(sample)
        result.peak_rss_mb = peak_rss_mb()
        engine.reset()  # free this length's KV before the next
        results.append(result)

    settings = {"lengths": lengths, "samples": [counts[n] for n in lengths], "seed": seed, "max_new_tokens": task.max_new_tokens,
                "sampling": "greedy", "vs_transformers": vs_transformers}
    if vs_transformers and any(r.ran for r in results):
        reference = TransformersReference(runner.model.path, runner.model.device, runner.model.decoder.dtype, note)
        machine["hf_load_s"] = round(reference.load_s, 2)
        for result in results:
            if result.ran:
                result.hf = reference.compare(engine, plans[result.length][0][1])
                if on_hf:
                    on_hf(result)
        del reference
    machine["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    return BenchResult(task.name, settings, machine, results)


def compress_prompt(compressor, task: Task, tokenizer, prompt: list[int]):
    """(the prompt with its context compressed, the compression result)."""
    from longchat.bench.base import encode_prompt

    head, context, tail, question = task.split(tokenizer.decode(prompt, skip_special_tokens=True))
    result = compressor.compress([context], question=question)
    return encode_prompt(tokenizer, head + result.text + tail), result


def build_prompts(task: Task, tokenizer, length: int, samples: int, seed: int) -> list[tuple[float, list[int], Any]]:
    """(depth, prompt_ids, expected) for each sample of one length; the reply's tokens count in `length`."""
    plan = []
    for index, depth in enumerate(depths(samples)):
        # A string seed per (task, seed, length, sample): the same prompt whatever else is run.
        rng = random.Random(f"{task.name}:{seed}:{length}:{index}")
        try:
            prompt, expected = task.build_prompt(tokenizer, length - task.max_new_tokens, depth, rng)
        except InputError as e:
            raise InputError(f"length {length} is too short: {e} ({length} minus {task.max_new_tokens} "
                             f"for the reply)") from None
        plan.append((depth, prompt, expected))
    return plan


def _warm_up(engine, tokenizer) -> None:
    # The first forward pays one-off costs (allocator growth, kernel selection); keep them out
    # of the first sample's timings.
    ids = tokenizer("The grass is green. The sky is blue. " * 8)["input_ids"]
    engine.reset()
    for _ in engine.generate(ids, Sampling(max_new_tokens=4)):
        pass
    engine.reset()


class TransformersReference:
    """The same model folder loaded by plain transformers: the speed and output to compare with."""

    DECODE_TOKENS = 16
    ROUNDS = 3

    def __init__(self, path, device: torch.device, dtype: torch.dtype, note: Note = lambda m: None):
        from transformers import AutoModelForCausalLM

        from longchat.runtime.loader import _quiet_transformers

        note(f"loading {path} with transformers for comparison")
        start = time.perf_counter()
        with _quiet_transformers():
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        self.load_s = time.perf_counter() - start
        self.device = device
        self._generate([1, 2, 3, 4] * 8, 4)  # warm-up, as for ours

    def _generate(self, prompt: list[int], new_tokens: int) -> tuple[list[int], float, list[float]]:
        """Greedy `new_tokens` tokens; returns (tokens, seconds, the time each next token was picked)."""
        from transformers import LogitsProcessorList

        ids = torch.tensor([prompt], device=self.device)
        config = self.model.generation_config
        pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
        if isinstance(pad, list):
            pad = pad[0]
        clock = _StepClock(self.device)
        sync(self.device)
        start = time.perf_counter()
        out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                  min_new_tokens=new_tokens, do_sample=False, temperature=None, top_p=None,
                                  top_k=None, pad_token_id=pad, logits_processor=LogitsProcessorList([clock]))
        sync(self.device)
        return out[0, len(prompt):].tolist(), time.perf_counter() - start, clock.times

    def compare(self, engine, prompt: list[int]) -> HFComparison:
        """Time ours, then transformers, on `prompt`, `ROUNDS` times taking turns: prefill, and 16
        greedy new tokens; each rate is the median of its rounds (one timing each varied by ~10%
        here).

        Transformers' prefill is generate(max_new_tokens=1); its decode rate is timed between the
        first and the last token pick of generate(max_new_tokens=16, min_new_tokens=16).
        """
        ours_prefill, ours_decode, prefills, decodes, subtracted = [], [], [], [], []
        for _ in range(self.ROUNDS):
            engine.reset()
            ours = list(engine.generate(prompt, Sampling(max_new_tokens=self.DECODE_TOKENS)))
            ours_prefill.append(engine.stats.prefill_tok_s)
            ours_decode.append(engine.stats.decode_tok_s)
            engine.reset()
            reset_peak_rss()
            _, prefill_s, _ = self._generate(prompt, 1)
            tokens, total_s, steps = self._generate(prompt, self.DECODE_TOKENS)
            # Decode is timed inside the 16-token call: subtracting a separate prefill run leaves
            # 15 steps (~1-2 s) against prefill jitter of the same size at 4k+ tokens.
            prefills.append(prefill_s)
            decodes.append(max(steps[-1] - steps[0], 1e-9) / (len(steps) - 1))
            subtracted.append(max(total_s - prefill_s, 1e-9) / (self.DECODE_TOKENS - 1))
        prefill_s, step_s = statistics.median(prefills), statistics.median(decodes)
        compared = min(len(ours), len(tokens))
        agree = next((i for i in range(compared) if ours[i] != tokens[i]), compared)
        return HFComparison(
            prompt_tokens=len(prompt), prefill_s=round(prefill_s, 3), prefill_tok_s=round(len(prompt) / prefill_s, 1),
            decode_s=round(step_s * (len(steps) - 1), 3), decode_tok_s=round(1 / step_s, 2),
            decode_tok_s_subtracted=round(1 / statistics.median(subtracted), 2),
            peak_rss_mb=round(peak_rss_mb(), 1), token_ids=tokens,
            answer=engine.model.tokenizer.decode(tokens, skip_special_tokens=True),
            ours_prefill_tok_s=round(statistics.median(ours_prefill), 1),
            ours_decode_tok_s=round(statistics.median(ours_decode), 2),
            agree=agree, compared=compared,
        )


class _StepClock:
    """A logits processor that changes nothing and notes when generate picks each token."""

    def __init__(self, device: torch.device):
        self.device = device
        self.times: list[float] = []

    def __call__(self, input_ids, scores):
        sync(self.device)
        self.times.append(time.perf_counter())
        return scores

