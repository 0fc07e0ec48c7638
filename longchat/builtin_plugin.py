"""longchat's own readers, strategies, compressors, memory functions, commands and profiles,
registered through the same hooks a third-party plugin uses (see longchat/plugins.py)."""

from __future__ import annotations

from longchat.plugins import hookimpl


@hookimpl
def longchat_readers():
    from longchat.sources.pdf import PDF
    from longchat.sources.text import TEXT

    return [TEXT, PDF]


@hookimpl
def longchat_strategies():
    from longchat.context import auto, full, infllm, lm_infinite, rope_scaled, self_extend, streaming

    return [full.FullAttention, auto.Auto, infllm.InfLLM, lm_infinite.LMInfinite, self_extend.SelfExtend,
            streaming.StreamingLLM, rope_scaled.RopeScaled]


@hookimpl
def longchat_compressors():
    from longchat.compress.lingua import METHODS, Compressor

    return [(method, Compressor) for method in METHODS]


@hookimpl
def longchat_memory_functions(store, session_id):
    from longchat.sessions.functions import builtin_functions

    table = builtin_functions(store, session_id, say=lambda message: None)
    return [f for name, f in table.items() if name != "send_message"]  # send_message belongs to the session


@hookimpl
def longchat_commands(app):
    from longchat.cli import ask, bench, chat, compress, info, memories, plugins, sessions, summarize  # noqa: F401

    return [c.name or c.callback.__name__ for c in app.registered_commands] + \
        [g.name for g in app.registered_groups]
