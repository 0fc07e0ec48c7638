"""`longchat compress SOURCE...`: the compressed text on stdout, figures on stderr."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from longchat.cli.app import app
from longchat.cli.common import (DeviceOpt, ExcludeOpt, IncludeOpt, KeepOpt, ProfileOpt, QuietOpt, SetOpt, check_rate,
                                 check_sources, check_text, note, open_runner_cli, prefill_progress, set_quiet, usage_error,
                                 use_compression, use_selection)


@app.command()
def compress(
    sources: Optional[List[str]] = typer.Argument(None, metavar="SOURCE", help="Files, PDFs, folders, or - ; stdin when none is given."),
    rate: Optional[float] = typer.Option(None, "--rate", "-r", callback=check_rate, help="Share of the input's tokens to keep, 0-1 (default 0.5)."),
    target_tokens: Optional[int] = typer.Option(None, "--target-tokens", min=1, help="Keep about this many tokens of the input instead of a rate."),
    question: Optional[str] = typer.Option(None, "--question", "-q", callback=check_text, help="What the text will be asked: passages and words that answer it are kept first (longllmlingua)."),
    method: Optional[str] = typer.Option(None, "--method", help="longllmlingua (question-aware; the default), llmlingua, or a plugin's method (see `longchat plugins`)."),
    keep: Optional[List[str]] = KeepOpt,
    include: Optional[List[str]] = IncludeOpt,
    exclude: Optional[List[str]] = ExcludeOpt,
    profile: str = ProfileOpt,
    compressor: Optional[str] = typer.Option(None, "--compressor", help="The model that scores tokens. Default: the profile's compress.model (the bundled small model)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="The engine the text is for, openai:URL[#NAME]: without --rate or --target-tokens, compress to what fits its window (prompt + the profile's reply). Compression still runs here."),
    device: Optional[str] = DeviceOpt,
    set_: Optional[List[str]] = SetOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (text and figures) instead of the text."),
    quiet: bool = QuietOpt,
) -> None:
    """Compress SOURCEs (or stdin) so a model reads fewer tokens; print the result on stdout.

    Only words the compressor finds informative survive (LLMLingua); with --question,
    passages and words that help answer it are preferred (LongLLMLingua). Numbers, names,
    code lines and --keep strings are kept or dropped whole, never cut. The ratio, tokens
    in/out and time go to stderr, so the output can feed another tool.

    Example: longchat compress book.txt --rate 0.3 -q "Who is the killer?" | llm "..."
    """
    from longchat import compress as squeeze
    from longchat import api
    from longchat.errors import InputError

    use_selection(include, exclude)
    check_sources(sources or [])
    set_quiet(quiet)
    overrides = list(set_ or [])
    if compressor:
        overrides.append(f"compress.model={json.dumps(compressor)}")
    if method:
        known = squeeze.methods()
        if method not in known:
            raise InputError(f"--method must be one of: {', '.join(known)}")
        overrides.append(f"compress.method={json.dumps(method)}")
    if model is not None:
        from longchat.runtime.remote import is_remote

        if not is_remote(model):
            raise usage_error("compress --model takes an engine, openai:URL[#NAME] (the scoring model is "
                              "--compressor)")
        runner = open_runner_cli(profile, model, device, overrides)
        if rate is None and not target_tokens:
            # The runner's window is in the local tokenizer's units, with the engine's ratio applied.
            target_tokens = max(64, runner.window - runner.profile.generation.max_new_tokens - 64)
            note(f"compressing to ~{target_tokens:,} tokens: what fits the engine's window "
                 f"({runner.model.window:,} of its tokens) with a {runner.profile.generation.max_new_tokens}-token reply")
    else:
        runner = open_runner_cli(profile, compressor, device, overrides)
    use_compression(runner, 0.5 if rate is None and not target_tokens else rate, target_tokens)
    with prefill_progress("compressing") as progress:
        result = api.compress_input(runner, sources or ["-"], question, keep=keep or [], progress=progress,
                                         note=note)
    if as_json:
        print(json.dumps({"text": result.text, **result.as_dict()}, ensure_ascii=False))
    else:
        print(result.text, flush=True)
