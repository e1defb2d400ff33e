"""Counting tokens before a call: exact with an installed offline tokenizer, otherwise a documented heuristic.

The heuristic counts ASCII characters at a per-provider characters-per-token ratio and every other character
(CJK, emoji, accented letters) as one token each, which over-counts rather than under-counts; chat messages add
OpenAI's documented overhead of 3 tokens per message plus 3 for the reply. Budgets use these counts to refuse
calls before they are made, so erring high is the safe side.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs

from . import _state
from ._prices import cost_of, money_cost_of
from ._usage import MAX_COUNT

_resolved = _state.resolved_prices
#: model -> (its ``_counting``, its ``message_tokens_table``, the prices' generation its amounts were priced at, the
#: amounts by (input, output), each with the same in 10**-18 units: ``(amount, atto)``).
_Kept = tuple[float, Any, dict[str, int], list[int], int, dict[tuple[int, int], tuple[Decimal, int]]]
_kept: dict[str, _Kept] = _state.estimated_amounts
_heuristic_kept: dict[str, _Kept] = _state.heuristic_amounts
_ceil = math.ceil

__all__ = ["CHARS_PER_TOKEN", "Estimate", "count_tokens", "estimate_cost", "estimated_amount"]

#: ASCII characters per token, by model family (measured ratios for English prose and code are 3.5 to 4.2).
CHARS_PER_TOKEN = {"openai": 4.0, "anthropic": 3.5, "google": 4.0, "mistral": 3.5, "default": 3.7}
MESSAGE_OVERHEAD = 3
REPLY_OVERHEAD = 3
_MODELS_KEPT = 1024  # models whose way of counting is remembered
# Texts whose tokens are remembered, per way of counting: at most this many, each at most this long (a bound on the
# memory held, ~2 M characters; longer texts are counted each time). Only texts whose count costs more than a lookup
# are kept (a tokenizer's, or a text with non-ASCII characters).
_TEXTS_KEPT = 256
_TEXT_CHARS_KEPT = 8192
# Estimates remembered (``estimated_amount``): for at most this many models, at most this many amounts each.
_MODELS_PRICED = 32
_AMOUNTS_KEPT = 512
#: Messages whose text is shorter than this are counted from ``message_tokens_table`` where it is at hand.
CEIL_TABLE_CHARS = 4096
_message_tables: dict[float, list[int]] = {}  # by ratio: ``CHARS_PER_TOKEN``'s, or a caller's
_RATIOS_KEPT = 8


def _family(model: str | None) -> str:
    if not model:
        return "default"
    name = model.lower().rsplit("/", 1)[-1]
    if name.startswith(("gpt", "o1", "o3", "o4", "text-embedding", "chatgpt", "davinci")):
        return "openai"
    if name.startswith("claude"):
        return "anthropic"
    if name.startswith(("gemini", "gemma")):
        return "google"
    if name.startswith(("mistral", "mixtral", "codestral", "ministral", "pixtral", "magistral")):
        return "mistral"
    return "default"


def _counting(model: str | None) -> tuple[float, Any, dict[str, int]]:
    """How ``model``'s text is counted: (ASCII characters per token, a tiktoken encoding or ``None``, the counts of
    texts already counted that way), found once per model (a budget estimates every call it checks from the call's
    prompt)."""
    try:
        return _state.model_encodings[model]  # type: ignore[no-any-return]
    except KeyError:
        pass
    family = _family(model)
    chars_per_token = CHARS_PER_TOKEN[family]
    encoding = _encoding(model) if family == "openai" else None
    # Texts are counted alike by the models counted alike. (The encoding by ``id``: it need not be hashable, and it
    # stays in ``_state.encodings`` while these counts stay, until ``reset()`` clears both.)
    found = (chars_per_token, encoding, _state.token_counts.setdefault((chars_per_token, id(encoding)), {}))
    if len(_state.model_encodings) < _MODELS_KEPT:  # (model names come from callers: keep a bounded number)
        _state.model_encodings[model] = found
    return found


def _encoding(model: str | None) -> Any:
    """A tiktoken encoding for an OpenAI model if one loads offline, else ``None``.

    tiktoken fetches its BPE files on first use unless they are cached locally; the load runs in a thread with a
    short deadline so a machine without network never waits long, and a failure is remembered for the process.
    """
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        name = tiktoken.encoding_name_for_model(model or "gpt-4o")
    except KeyError:
        name = "o200k_base"
    encodings = _state.encodings
    with _state.encodings_lock:
        if name in encodings:
            return encodings[name]
        box: list[Any] = [None]

        def load() -> None:
            try:
                box[0] = tiktoken.get_encoding(name)
            except Exception:  # noqa: BLE001 - no network, no cache: fall back to the heuristic
                box[0] = None

        worker = threading.Thread(target=load, daemon=True, name="llmcost-tiktoken")
        worker.start()
        worker.join(2.0)
        encodings[name] = box[0]
        return box[0]


def _text_of(content: Any, index: int) -> str:
    """The text of message ``index``'s ``content`` (its text parts joined), or a ``TypeError`` naming it."""
    field = f"messages[{index}]['content']"
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
            else:
                raise TypeError(f"{field} parts must be str or {{'type': 'text', 'text': ...}} dicts, got {part!r}")
        return "\n".join(parts)
    raise TypeError(f"{field} must be a str or a list of parts, got {content!r}")


def _heuristic(text: str, chars_per_token: float) -> int:
    if text.isascii():  # (in C, as is the count below: a prompt can be long)
        return math.ceil(len(text) / chars_per_token)
    ascii_chars = len(text.encode("ascii", "ignore"))
    return math.ceil(ascii_chars / chars_per_token) + len(text) - ascii_chars


def _count_text(text: str, chars_per_token: float, encoding: Any, counts: dict[str, int]) -> int:
    if encoding is None and text.isascii():  # (in C, without reading the text: no cheaper to look up)
        return math.ceil(len(text) / chars_per_token)
    if type(text) is not str or len(text) > _TEXT_CHARS_KEPT:  # (a str subclass may count itself otherwise)
        return _uncounted(text, chars_per_token, encoding)
    # A text counted before is one lookup (a str keeps its hash). No lock: each get and set is one step under the
    # GIL, and a count is the same whoever finds it; a table found full starts afresh.
    found = counts.get(text)
    if found is None:
        found = _uncounted(text, chars_per_token, encoding)
        if len(counts) >= _TEXTS_KEPT:
            counts.clear()
        counts[text] = found
    return found


def _uncounted(text: str, chars_per_token: float, encoding: Any) -> int:
    if encoding is not None:
        return len(encoding.encode(text, disallowed_special=()))
    return _heuristic(text, chars_per_token)


def count_tokens(text_or_messages: str | Sequence[Mapping[str, Any]], model: str | None = None) -> int:
    """Tokens in a prompt: a string, or chat messages (``[{"role": ..., "content": ...}, ...]``).

    Exact for OpenAI models when tiktoken is installed and its encoding loads offline; otherwise the heuristic of
    this module's docstring (typically within 10-15% for English, erring high for other scripts).

    Example::

        >>> count_tokens("Hello, world!", model="gpt-4o") > 0
        True
        >>> count_tokens([{"role": "user", "content": "Hi"}], model="claude-3-5-haiku-latest")
        7
    """
    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a model id (str) or None, got {model!r}")
    return _prompt_tokens(text_or_messages, *_counting(model))


def _prompt_tokens(
    prompt: str | Sequence[Mapping[str, Any]], chars_per_token: float, encoding: Any, counts: dict[str, int]
) -> int:
    """``count_tokens`` of ``prompt`` counted as ``_counting`` says."""
    if type(prompt) is list and encoding is None:
        # The usual prompt, chat messages of plain ASCII text counted by the heuristic, in one pass (a budget counts
        # the prompt of every call it checks); any other message and the loop below counts the whole prompt.
        total = REPLY_OVERHEAD if prompt else 0
        for message in prompt:
            if type(message) is not dict or "name" in message:
                break
            content = message.get("content")
            if type(content) is not str or not content.isascii():
                break
            total += MESSAGE_OVERHEAD + math.ceil(len(content) / chars_per_token)
        else:
            return total
    if isinstance(prompt, str):
        return _count_text(prompt, chars_per_token, encoding, counts)
    # (The exact types first, the ABCs for the rest.)
    if type(prompt) is not list and not isinstance(prompt, Sequence):
        raise TypeError(f"text_or_messages must be a str or a list of message dicts, got {prompt!r}")
    total = REPLY_OVERHEAD if prompt else 0
    for index, message in enumerate(prompt):
        if type(message) is not dict and not isinstance(message, Mapping):
            raise TypeError(f"messages[{index}] must be a dict with 'role' and 'content', got {message!r}")
        if "content" not in message and "role" not in message:  # not a chat message: it was counted as an empty one
            raise TypeError(f"messages[{index}] must be a dict with 'role' and 'content', got {message!r}")
        content = message.get("content")
        text = content if type(content) is str else _text_of(content, index)
        total += MESSAGE_OVERHEAD + _count_text(text, chars_per_token, encoding, counts)
        name = message.get("name")
        if isinstance(name, str):
            total += _count_text(name, chars_per_token, encoding, counts)
    return total


@attrs.frozen
class Estimate:
    """What a call is expected to cost before it is made.

    Example::

        est = llmcost.estimate_cost("gpt-4o", "Summarize this...", output_tokens=300)
        print(est.input_tokens, est.output_tokens, est.amount)
    """

    input_tokens: int
    output_tokens: int
    amount: Decimal


def estimate_cost(model: str, prompt: str | Sequence[Mapping[str, Any]], *, output_tokens: int = 500) -> Estimate:
    """Estimate the cost of sending ``prompt`` (text or chat messages) to ``model`` and getting ``output_tokens``.

    Example::

        >>> estimate_cost("gpt-4o", "x" * 4000, output_tokens=0).amount
        Decimal('0.0025')
    """
    if isinstance(output_tokens, bool) or not isinstance(output_tokens, int) or output_tokens < 0:
        raise ValueError(f"output_tokens must be a non-negative int, got {output_tokens!r}")
    input_tokens = count_tokens(prompt, model)
    return Estimate(input_tokens, output_tokens, cost_of(model, input_tokens, output_tokens))


def estimated_amount(model: str, prompt: str | Sequence[Mapping[str, Any]], output_tokens: int) -> Decimal:
    """``estimate_cost(model, prompt, output_tokens=output_tokens).amount`` at money's places, for a valid
    ``output_tokens``: a budget's estimate of a call from its request arguments, before every such call it checks
    (``money_cost_of``: the budget reserves it exactly)."""
    # (One function, the usual prompt counted inline: this runs before every budgeted call with request arguments.)
    kept = _kept.get(model)
    if kept is None:
        return _estimated_afresh(model, prompt, output_tokens)
    chars_per_token, encoding, counts, _, generation, amounts = kept
    if type(prompt) is list and encoding is None:
        # Chat messages of plain ASCII text, counted as ``_prompt_tokens`` counts them; at any other message it
        # counts the whole prompt.
        input_tokens = REPLY_OVERHEAD if prompt else 0
        for message in prompt:
            if type(message) is not dict or "name" in message:
                input_tokens = _prompt_tokens(prompt, chars_per_token, encoding, counts)
                break
            content = message.get("content")
            if type(content) is not str or not content.isascii():
                input_tokens = _prompt_tokens(prompt, chars_per_token, encoding, counts)
                break
            input_tokens += MESSAGE_OVERHEAD + _ceil(len(content) / chars_per_token)
    else:
        input_tokens = _prompt_tokens(prompt, chars_per_token, encoding, counts)
    if generation == _state.prices_generation:
        found = amounts.get((input_tokens, output_tokens))
        if found is not None:
            return found[0]
    return _priced(model, input_tokens, output_tokens, kept)[0]


def message_tokens_table(chars_per_token: float) -> list[int]:
    """``MESSAGE_OVERHEAD + math.ceil(n / chars_per_token)`` for every ``n`` below ``CEIL_TABLE_CHARS``: the tokens of
    a chat message of ``n`` ASCII characters by the heuristic, read off its text's length (``_estimate``'s reading of
    a request: an item of a list is half the instructions of the division and ceiling, and the message's overhead
    comes with it, in each message of every request a budget estimates). One table per ratio, its equal counts one
    ``int`` (~60 KB)."""
    table = _message_tables.get(chars_per_token)
    if table is None:
        counts: dict[int, int] = {}
        table = [
            counts.setdefault(n, n)
            for n in (MESSAGE_OVERHEAD + math.ceil(n / chars_per_token) for n in range(CEIL_TABLE_CHARS))
        ]
        if len(_message_tables) >= _RATIOS_KEPT:
            _message_tables.clear()
        _message_tables[chars_per_token] = table
    return table


def _estimated_afresh(model: str, prompt: str | Sequence[Mapping[str, Any]], output_tokens: int) -> Decimal:
    """``estimated_amount`` of a model with no amounts kept (yet, or any longer)."""
    counting = _state.model_encodings.get(model)
    if counting is None:
        if not isinstance(model, str):
            raise TypeError(f"model must be a model id (str) or None, got {model!r}")
        counting = _counting(model)
    return _priced(model, _prompt_tokens(prompt, *counting), output_tokens, None)[0]


def _priced(model: str, input_tokens: int, output_tokens: int, kept: _Kept | None) -> tuple[Decimal, int | None]:
    """``money_cost_of(model, input_tokens, output_tokens)`` with the same in 10**-18 units (``None`` where not
    found), kept (in ``_state.estimated_amounts``, with the model's way of counting) for the next estimate of the
    same counts.

    Only amounts of a fixed price's integer pricer (``Resolved.atto_pricer``) are kept: its amounts are exact in any
    decimal context. A kept amount holds while the registered prices stay (``_state.prices_generation``, read before
    the price is looked up: never newer than it).
    """
    generation = _state.prices_generation
    resolved = _resolved.get((model, None))
    if resolved is None:  # (the model's first price asked for: looked up, and resolved from then on)
        amount = money_cost_of(model, input_tokens, output_tokens)
        resolved = _resolved.get((model, None))
        if resolved is None or resolved.atto_pricer is None:
            return amount, None
    pricer = resolved.atto_pricer
    if (
        pricer is None
        or type(output_tokens) is not int  # (as ``money_cost_of``: bools and the like take ``cost_of``'s checks)
        or not 0 <= output_tokens <= MAX_COUNT
        or input_tokens > MAX_COUNT
    ):
        return money_cost_of(model, input_tokens, output_tokens), None
    found = pricer(input_tokens, output_tokens, 0, 0, 0)
    if found is None:
        return money_cost_of(model, input_tokens, output_tokens), None
    if kept is not None and kept[4] == generation:
        amounts = kept[5]
        if len(amounts) >= _AMOUNTS_KEPT:
            amounts.clear()
        amounts[input_tokens, output_tokens] = found
        return found
    # The first amount of the model, or the first since prices changed: a new value, its amounts with it, so that a
    # thread still holding the old one adds to the old amounts only.
    counting = _state.model_encodings.get(model) or _counting(model)
    if len(_kept) >= _MODELS_PRICED:
        _kept.clear()
        _heuristic_kept.clear()
    amounts = {(input_tokens, output_tokens): found}
    kept = _kept[model] = (*counting, message_tokens_table(counting[0]), generation, amounts)
    if counting[1] is None:
        # Read by ``_estimate.request_estimate_atto`` with no generation check: kept there only while the prices are
        # these. Prices that changed as it was kept (the count moved) empty the dict after their count, or else the
        # count is seen moved here and the value goes again.
        _heuristic_kept[model] = kept
        if generation != _state.prices_generation:
            _heuristic_kept.pop(model, None)
    return found
