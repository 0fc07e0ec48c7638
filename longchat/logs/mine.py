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
# whitespace or a newline (batches are joined by newlines; variables are found by word).
# Each pattern starts with a plain character class, no lookbehind or \b: the regex engine
# then skips ahead to candidate characters, which makes masking 2-4x faster.
ARCHES = r"(?:amd64|arm64|armhf|armel|i386|i686|x86_64|aarch64|ppc64el|ppc64le|s390x|riscv64|mips64el|all|any|noarch)"
MASKS: list[tuple[str, re.Pattern]] = [
    ("<UUID>", re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")),
    ("<TIME>", re.compile(r"\d\d(?:\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?|:\d\d:\d\d(?:\.\d+)?)")),
    # A package with its architecture ('libc6:amd64', 'zlib1g:i386', 'tzdata:all'), as dpkg and apt write it.
    ("<PKG>", re.compile(r"[\w](?<!\S\w)[\w.+-]*:" + ARCHES + r"(?!\S)")),
    # A version string, a whole word: a digit first, then '+' or '~', or a '.' and a '-' (Debian's
    # upstream-revision, an epoch allowed: '1.2.3-4+deb12u1', '2:8.2.3995-1ubuntu2.15', '2025b-0+deb12u1');
    # and dpkg's '<none>'. '1.5', '2026-12-01', 'usb 1-3:' and '12.5ms' are not versions.
    ("<VER>", re.compile(r"\d(?<!\S\d)(?:[\w.:-]*[+~]|[\w:]*\.[\w.:]*-|[\w.:]*-[\w:+~-]*\.)[\w.:+~-]*(?!\S)"
                         r"|<none>(?!\S)")),
    # IPv6 written out, and MAC addresses (which read as IPv6); then IPv4, with a port.
    ("<IP>", re.compile(r"[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4}){5,7}")),
    ("<IP>", re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?::\d{1,5})?")),
    ("<PATH>", re.compile(r"/(?<![\w/.<]/)[\w.@+-]+(?:/[\w.@+-]+)+/?")),
    ("<HEX>", re.compile(r"0x[0-9a-fA-F]+|[0-9a-fA-F]{8,}")),
    # Ids: digits, letters, digits ('req-8f3a91' -> 'req-<ID>', 'a1b2c3' -> 'a<ID>'); 'sda1', 'x86_64' stay.
    ("<ID>", re.compile(r"\d[a-zA-Z]+\d\w*")),
    # Numbers, also with a unit after them ('12.5ms', '40%'); not the digit of a name ('sda1').
    ("<NUM>", re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\d.])")),
]
TAGS = tuple(dict.fromkeys(tag for tag, _ in MASKS))
# What the batch pass applies: the masks that are cheap on any text. The others (UUIDs, IPv6
# and MACs: slow to look for, rare in most logs) run on one message at a time, only when its
# cheaply masked shape is new (see `Miner.template_id`), so a log full of UUIDs costs a
# regex per message, not Drain per message.
RARE = {"<UUID>"}
FAST = [(tag, p) for tag, p in MASKS if tag not in RARE and not p.pattern.startswith("[0-9a-fA-F]{1,4}(?::")]
# A mask that would try every word of every line runs only on text that holds what it needs.
GATES = {"<PKG>": re.compile(r":" + ARCHES + r"(?!\S)")}
_ALL_VALUE = re.compile(r"(?:<[A-Z]+>|[-.:+~_/,])*<[A-Z]+>(?:<[A-Z]+>|[-.:+~_/,])*")  # '<NUM>-<NUM>': no literal left
HEAD_WORDS = 3  # literal words at most before a message's variables that name its kind (see `kind_words`)
WILDCARD = "<*>"
_DIGITS_AS_LETTERS = str.maketrans("0123456789", "abcdefghij")


def mask_batch(messages: list[str]) -> list[str]:
    """Each message with the cheap masks' variable parts replaced by tags ('<NUM>', '<IP>', ...)."""
    text = "\n".join(messages)
    for tag, pattern in FAST:
        if tag not in GATES or GATES[tag].search(text):
            text = pattern.sub(tag, text)
    return text.split("\n")


def mask(message: str) -> str:
    """One message with every mask applied."""
    for tag, pattern in MASKS:
        if tag not in GATES or GATES[tag].search(message):
            message = pattern.sub(tag, message)
    return message


def kind_words(masked: str) -> list[str]:
    """The leading literal words of a message whose other words are all masked variables
    (tags, or tags and separators: '<NUM>-<NUM>'): 'status unpacked <PKG> <VER>' -> ['status',
    'unpacked'], else []. Such a message is all
    kind and values: Drain, which counts the shared tags as similarity, would merge 'status
    unpacked' with 'status installed'; these words keep the kinds apart."""
    words = masked.split()
    head = 0
    while head < len(words) and not _ALL_VALUE.fullmatch(words[head]):
        head += 1
    if not 1 <= head <= HEAD_WORDS or len(words) - head < 2 or not all(map(_ALL_VALUE.fullmatch, words[head:])):
        return []
    return words[:head]


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

    def template_id(self, level: str, shape: str, message: str) -> int:
        """The id of the template of `message` (its cheaply masked `shape` from `mask_batch`),
        a new one when it matches none. The level is the first word Drain sees, so Drain never
        mixes levels; a level may carry a group its templates must not mix ('error 507': an
        HTTP status), and so do a message's `kind_words`, spelt without digits, which Drain
        would read as a variable."""
        key = f"{level} {shape}"
        found = self.cache.get(key)
        if found is not None:
            return found
        masked = mask(message)
        group = level.split() + kind_words(masked)
        if len(group) > 1:
            level = "|".join(group).translate(_DIGITS_AS_LETTERS)
        full = f"{level} {masked}"
        found = self.cache.get(full)
        if found is None:
            found = self.miner.add_log_message(full)["cluster_id"]
        if len(self.cache) >= self.cache_size:
            self.cache.clear()  # bounded memory; the shapes that matter come back at once
        self.cache[key] = self.cache[full] = found
        return found

    def tokens(self, cluster_id: int) -> tuple[str, ...] | None:
        """The template's tokens now (the level first), or None once Drain has forgotten it."""
        cluster = self.miner.drain.id_to_cluster.get(cluster_id)
        return None if cluster is None else tuple(cluster.log_template_tokens)

    @property
    def count(self) -> int:
        return self.miner.drain.clusters_counter
