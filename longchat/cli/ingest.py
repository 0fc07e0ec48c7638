"""`longchat ingest`: encode sources once into a named memory that later questions reuse."""

from __future__ import annotations

from typing import List, Optional

import typer

from longchat.cli.app import app
from longchat.cli.common import (DeviceOpt, ExcludeOpt, IncludeOpt, ModelOpt, ProfileOpt, QuietOpt, SetOpt, check_sources, note, open_runner_cli,
                                 prefill_progress, set_quiet, usage_error,
                                 use_selection)


@app.command()
def ingest(
    sources: List[str] = typer.Argument(..., metavar="SOURCE", help="Files, PDFs, folders (repositories), or - for stdin."),
    name: Optional[str] = typer.Option(None, "--name", help="The memory's name. Default: the first source's file or folder name."),
    append: bool = typer.Option(False, "--append", help="Add SOURCEs to the existing memory NAME (a grown log is continued, not re-read)."),
    include: Optional[List[str]] = IncludeOpt,
    exclude: Optional[List[str]] = ExcludeOpt,
    profile: str = ProfileOpt,
    model: Optional[str] = ModelOpt,
    device: Optional[str] = DeviceOpt,
    set_: Optional[List[str]] = SetOpt,
    checkpoint_every: int = typer.Option(32768, "--checkpoint-every", min=1, help="Tokens between checkpoints: where an interrupted ingest resumes, and where a changed source is re-encoded from."),
    quiet: bool = QuietOpt,
) -> None:
    """Encode SOURCEs once into a named memory; then `ask --memory NAME` answers from it fast.

    Running it again on the same memory resumes an interrupted ingest, says which source changed
    and re-encodes from there, or reports that the memory is up to date.

    Example: longchat ingest ./myrepo --name myrepo && longchat ask --memory myrepo "Where is main()?"
    """
    from longchat import memory

    from longchat.memory.store import NAME

    if name is not None and not NAME.match(name):
        raise usage_error(f"bad memory name {name!r}: use letters, digits, '.', '_' and '-'")
    use_selection(include, exclude)
    check_sources(sources)
    set_quiet(quiet)
    runner = open_runner_cli(profile, model, device, set_)
    past = getattr(runner.profile.strategy, "passages_past", 0)
    if past:  # say up front which questions will read what is about to be encoded
        note(f"profile '{runner.profile.name}': questions whose words a passage holds, or whose meaning a few lines "
             f"match, will read the memory's stored text (BM25 passages, nearest lines); its encoded blocks serve "
             f"the others and questions about the whole input (--profile infllm reads the blocks for every question)")
    with prefill_progress("encoding", always=True) as progress:
        result = memory.ingest(runner, sources, name=name, append=append, progress=progress, note=note,
                               checkpoint_every=checkpoint_every)
    mem = result.memory
    if result.up_to_date:
        note(f"memory '{mem.name}' is up to date")
    else:
        note(f"encoded {result.encoded:,} tokens in {result.seconds:.1f} s ({result.tokens_per_s:,.0f} tokens/s)")
    print(memory.describe(mem))
