"""InfLLM (Xiao et al. 2024) with longchat's retrieval: the whole algorithm is in this package.

strategy.py   the strategy: sinks + local window + retrieved blocks, one softmax; the
              question-time consensus and re-ranking (`read_last_chunk`)
blocks.py     where blocks live: RAM, temp files or a memory's files; representative keys
lexical.py    BM25 over blocks' words: re-ranking candidates the attention votes miss
"""

from longchat.context.infllm.strategy import InfLLM, InfLLMParams, existing_parent  # noqa: F401
