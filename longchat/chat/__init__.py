"""Conversations: the chat loop's turns and slash commands, and persistent sessions with
MemGPT-style memory paging (`longchat chat --session NAME`).

conversation.py  a conversation held in the model's window (turns, /commands, attached files)
session.py       a conversation kept in the session store: each prompt assembled inside a
                 budget, what leaves the window paged out and recalled
store.py         the SQLite store (recall, core, archival, summaries) and its lock
functions.py     memory functions for models that call them
commands.py      the session's slash commands (/remember, /core, ...)
"""
