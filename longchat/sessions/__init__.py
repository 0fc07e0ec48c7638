"""Persistent chat sessions with MemGPT-style memory paging (`longchat chat --session NAME`).

store.py: the SQLite store (recall, core, archival, summaries); chat.py: the conversation that
assembles each prompt inside a budget and pages; functions.py: memory functions for models
that call them; commands.py: the session's slash commands.
"""

from longchat.sessions import commands  # noqa: F401  (registers the slash commands)
