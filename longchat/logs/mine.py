"""Masking and template mining: variable parts of a message become tags, then Drain (the
`drain3` package, in memory) groups the masked messages into templates.

Masking runs on a whole batch of messages joined by newlines (one regex pass per mask, in
C), and a masked message seen before skips Drain: most lines of a big log are repeats of a
few hundred masked shapes, so Drain sees only the new shapes.
"""

from __future__ import annotations

import re

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

# Most specific first: a UUID would otherwise be read as hex and numbers. No mask may match
# whitespace or a newline (batches are joined by newlines; variables are found by token).
MASKS: list[tuple[str, re.Pattern]] = [
    ("<UUID>", re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")),
    ("<TIME>", re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?|\b\d\d:\d\d:\d\d(?:\.\d+)?\b")),
    ("<MAC>", re.compile(r"\b(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}\b")),
    ("<IP>", re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])|"
                        r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){3,7}[0-9a-fA-F]{1,4}(?![\w:])")),
    ("<PATH>", re.compile(r"(?<![\w/.<])(?:/[\w.@+-]+){2,}/?")),
    ("<HEX>", re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b")),
    # Ids: a word of letters and digits with at least 6 characters and 2 digits ('req-8f3a91', 'a1b2c3d4').
    ("<ID>", re.compile(r"\b(?=[\w-]*\d[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9][\w-]{5,}\b")),
    # Numbers, also with a unit after them ('12.5ms', '40%') or after '=', ':', '#'.
    ("<NUM>", re.compile(r"(?:(?<![\w.])[-+]?|(?<=[=:(\[#]))\d+(?:[.,]\d+)*(?![\d.])")),
]
TAGS = tuple(tag for tag, _ in MASKS)
WILDCARD = "<*>"


def mask_batch(messages: list[str]) -> list[str]:
    """Each message with its variable parts replaced by tags ('<NUM>', '<IP>', ...)."""
    text = "\n".join(messages)
    for tag, pattern in MASKS:
        text = pattern.sub(tag, text)
    return text.split("\n")


def is_variable(token: str) -> bool:
    """A template token that stands for values: Drain's wildcard or a token holding a mask tag."""
    return "<" in token and (token == WILDCARD or any(tag in token for tag in TAGS))


class Miner:
    """Masked message -> template id, through drain3's `TemplateMiner` configured here (no ini
    file, no persistence). `max_templates` bounds Drain's memory (it forgets the least recently
    seen template past it); `cache_size` bounds the table of masked shapes already seen."""

    def __init__(self, *, max_templates: int = 5000, cache_size: int = 200_000, sim_th: float = 0.5):
        config = TemplateMinerConfig()
        config.drain_sim_th = sim_th
        config.drain_depth = 5
        config.drain_max_children = 100
        config.drain_max_clusters = max_templates
        config.masking_instructions = []  # masked already, by batch
        config.parametrize_numeric_tokens = True
        config.profiling_enabled = False
        self.miner = TemplateMiner(config=config)
        self.cache: dict[str, int] = {}
        self.cache_size = cache_size

    def template_id(self, level: str, masked: str) -> int:
        """The id of the template a masked message of this level belongs to (a new one when
        it matches none). The level is the first token, so Drain never mixes levels."""
        key = f"{level} {masked}"
        found = self.cache.get(key)
        if found is not None:
            return found
        result = self.miner.add_log_message(key)
        cluster_id = result["cluster_id"]
        if len(self.cache) >= self.cache_size:
            self.cache.clear()  # bounded memory; the shapes that matter come back at once
        self.cache[key] = cluster_id
        return cluster_id

    def tokens(self, cluster_id: int) -> tuple[str, ...] | None:
        """The template's tokens now (the level first), or None once Drain has forgotten it."""
        cluster = self.miner.drain.id_to_cluster.get(cluster_id)
        return None if cluster is None else tuple(cluster.log_template_tokens)

    @property
    def count(self) -> int:
        return self.miner.drain.clusters_counter
