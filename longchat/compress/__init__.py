"""Prompt compression: shrink what the model must read (LLMLingua / LongLLMLingua-style).

`compress_sources` reads files, folders, PDFs or stdin and returns the compressed text with its
figures; `ask`, `summarize` and `chat` call it when the profile's [compress] method is set (or
`--compress RATE` is given). The compressor is the bundled small model unless
`compress.model` names another, and it reuses the main model when they are the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO, Callable, Sequence

from longchat.errors import InputError
from longchat.sources import iter_documents, wants_headers

if TYPE_CHECKING:
    from longchat.compress.lingua import Compressor, Progress, Result

__all__ = ["METHODS", "Compressor", "Result", "compressor_for", "compress_sources", "methods", "read_documents",
           "with_rate"]

_LINGUA = ("METHODS", "Compressor", "Progress", "Result")


def __getattr__(name: str):
    """The compressor's names, imported on first use: `lingua` imports torch, which importing the
    package (a plugin's `budget`, `longchat --help`) need not wait for."""
    if name in _LINGUA:
        from longchat.compress import lingua

        return getattr(lingua, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def methods() -> dict[str, Callable]:
    """method name -> compressor factory(model, settings, note): the built-ins, then every plugin's."""
    from longchat import plugins
    from longchat.compress.lingua import METHODS, Compressor

    pairs = plugins.gather("longchat_compressors", [(method, Compressor) for method in METHODS], lambda item: item[0],
                           lambda item: isinstance(item, tuple) and len(item) == 2 and callable(item[1]),
                           "(name, factory) pair for a compressor")
    return {name: factory for name, (_, factory) in pairs.items()}


def compressor_for(runner, note: Callable[[str], None] = lambda m: None):
    """The profile's compressor, sharing the runner's model when it is the same one."""
    from longchat.compress.lingua import Compressor
    from longchat.runtime.loader import load_model, resolve_model_dir

    settings = runner.profile.compress
    model = runner.model
    if model.decoder is None:  # a remote engine: the compressor runs here, on the local device
        model = load_model(settings.model, note=note)
    elif resolve_model_dir(settings.model)[1].resolve() != model.path.resolve():
        model = load_model(settings.model, device=str(runner.model.device), note=note)
    factory = methods().get(settings.method, Compressor)
    return factory(model, settings, note=note)


def with_rate(settings, rate: float | None, target_tokens: int | None = None):
    """Settings for `--compress RATE` / `--target-tokens N`: the method defaults to longllmlingua."""
    if rate is None and not target_tokens:
        return settings
    from longchat.settings import build

    values = {**vars(settings), "method": settings.method if settings.on else "longllmlingua"}
    if rate is not None:
        values["rate"] = float(rate)
    if target_tokens:
        values["target_tokens"] = int(target_tokens)
    return build(type(settings), values, "command line")


def read_documents(specs: Sequence[str], *, stdin: BinaryIO | None = None,
                   note: Callable[[str], None] = lambda m: None) -> tuple[list[str], list[str] | None]:
    """(texts, labels): one text per file; labels (for "### File:" lines) when there are several."""
    texts, labels = [], []
    for doc in iter_documents(specs, stdin=stdin, note=note):
        texts.append("".join(doc.pieces()))
        labels.append(doc.label)
    if not any(t.strip() for t in texts):
        raise InputError("the input is empty")
    return texts, labels if wants_headers(specs) else None


def compress_sources(compressor: Compressor, specs: Sequence[str], *, question: str | None = None,
                     keep: Sequence[str] = (), stdin: BinaryIO | None = None, progress: Progress | None = None,
                     note: Callable[[str], None] = lambda m: None, method: str | None = None) -> Result:
    texts, labels = read_documents(specs, stdin=stdin, note=note)
    return compressor.compress(texts, question=question, labels=labels, keep=keep, method=method,
                               progress=progress or (lambda d, t: None))


def describe(result: Result) -> str:
    """One line for stderr: what compression did."""
    return (f"compressed {result.tokens_in:,} -> {result.tokens_out:,} tokens ({result.ratio:.0%} kept, "
            f"target {result.target:,}, {result.method}) in {result.seconds:.1f} s")

