"""`auto`: full attention while the input fits what the model reads reliably, InfLLM past it.

The choice is made per prompt, before its prefill (`prepare`), from the prompt + reply length
against the profile's `context.effective_window` (`full_up_to`): a model's *reliable* window,
not its config's max_position_embeddings. Switching strategies drops the
cached sequence, so a chat that outgrows the window is re-read once under InfLLM.
"""

from __future__ import annotations

from dataclasses import dataclass

from longchat.context.base import ContextStrategy, register_strategy
from longchat.context.full import FullAttention
from longchat.context.infllm import InfLLM, InfLLMParams
from longchat.settings import read_time, require


@dataclass
class AutoParams(InfLLMParams):
    full_up_to = 3072  # prompt + reply tokens read with full attention: context.effective_window (not a field)
    # The InfLLM keys above apply past the window.
    # `ask` past this many document tokens, when one passage holds half of the
    # question's words: read BM25's best passages (up to `passages_budget` tokens) alone with
    # full attention, as the `rag` baseline does, instead of the whole input with InfLLM. 0 = off.
    passages_past: int = read_time(4096)
    passages_budget: int = read_time(1024)
    # When no passage holds half of the question's words (a question in other words
    # than the input's), read the lines nearest the question's meaning (static word vectors, up
    # to `passages_budget` tokens) with full attention instead of InfLLM. 0 = off.
    meaning_lines: int = read_time(20)

    def validate(self, where: str) -> None:
        super().validate(where)
        require(self.passages_past >= 0, where, "passages_past", "an integer >= 0 (0 = off)")
        require(self.passages_budget >= 128, where, "passages_budget", "an integer >= 128 (tokens)")
        require(0 <= self.meaning_lines <= 1000, where, "meaning_lines", "an integer in 0..1000 (0 = off)")

    def check_context(self, context, where: str) -> None:
        super().check_context(context, where)
        # Not a setting: the profile's effective window, resolved here where [context] is at hand.
        self.full_up_to = context.effective_window or 3072


@register_strategy
class Auto(ContextStrategy):
    """Picks `full` or `infllm` per prompt (`prepare`); the engine runs the model through the
    one picked (`reader`), so nothing here forwards the attention calls."""

    name = "auto"
    Params = AutoParams
    runs = ("full", "infllm")
    _announced = False  # the first choice is always stated; later ones only when they change

    def reset(self) -> None:
        if not hasattr(self, "inner"):
            self.inner: ContextStrategy = self._make("full")
        self.inner.reset()

    def _make(self, name: str) -> ContextStrategy:
        cls, params = (FullAttention, None) if name == "full" else (InfLLM, self._infllm_params())
        return cls(self.cfg, self.rope, params, device=self.device, dtype=self.dtype, kv=self.kv.name)

    def _infllm_params(self) -> InfLLMParams:
        fields = {k: v for k, v in vars(self.params).items() if k in InfLLMParams.__dataclass_fields__}
        return InfLLMParams(**fields)

    @property
    def chosen(self) -> str:
        return self.inner.name

    def prepare(self, n_tokens: int) -> str | None:
        message = self.use("full" if n_tokens <= self.params.full_up_to else "infllm", n_tokens)
        self.inner.prepare(n_tokens)  # infllm's check that its memory blocks will fit
        return message

    def use(self, want: str, n_tokens: int) -> str | None:
        """Switch to `want` for a prompt + reply of `n_tokens`; the line for the user, if any."""
        if want == self.inner.name and self._announced:
            return None
        self._announced = True
        if want != self.inner.name:
            self.inner = self._make(want)
        how = "fits" if want == "full" else "is past"
        return (f"auto: prompt + longest reply = {n_tokens:,} tokens {how} the effective window "
                f"({self.params.full_up_to:,}); "
                f"using {'full attention' if want == 'full' else 'infllm'}")

    def memory_strategy(self, n_tokens: int):
        """Memories are InfLLM's: switch to it (a memory holds what is past the window)."""
        message = self.use("infllm", n_tokens)
        return self.inner, message

    def memory_params(self) -> InfLLMParams:
        return self._infllm_params()

    @property
    def reader(self) -> ContextStrategy:
        return self.inner
