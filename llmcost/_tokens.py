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

__all__ = ["CHARS_PER_TOKEN", "Estimate", "count_tokens", "estimate_cost", "estimated_amount"]

#: ASCII characters per token, by model family (measured ratios for English prose and code are 3.5 to 4.2).
CHARS_PER_TOKEN = {"openai": 4.0, "anthropic": 3.5, "google": 4.0, "mistral": 3.5, "default": 3.7}
MESSAGE_OVERHEAD = 3
REPLY_OVERHEAD = 3
_MODELS_KEPT = 1024  # models whose way of counting is remembered


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


def _counting(model: str | None) -> tuple[float, Any]:
    """How ``model``'s text is counted: (ASCII characters per token, a tiktoken encoding or ``None``), found once per
    model (a budget estimates every call it checks from the call's prompt)."""
    try:
        return _state.model_encodings[model]  # type: ignore[no-any-return]
    except KeyError:
        pass
    family = _family(model)
    found = (CHARS_PER_TOKEN[family], _encoding(model) if family == "openai" else None)
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


def _count_text(text: str, chars_per_token: float, encoding: Any) -> int:
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
    chars_per_token, encoding = _counting(model)
    if isinstance(text_or_messages, str):
        return _count_text(text_or_messages, chars_per_token, encoding)
    # (The exact types first, the ABCs for the rest: a budget counts the prompt of every call it checks.)
    if type(text_or_messages) is not list and not isinstance(text_or_messages, Sequence):
        raise TypeError(f"text_or_messages must be a str or a list of message dicts, got {text_or_messages!r}")
    total = REPLY_OVERHEAD if text_or_messages else 0
    for index, message in enumerate(text_or_messages):
        if type(message) is not dict and not isinstance(message, Mapping):
            raise TypeError(f"messages[{index}] must be a dict with 'role' and 'content', got {message!r}")
        content = message.get("content")
        if type(content) is str and encoding is None and content.isascii():  # ``_heuristic``'s usual case inline
            total += MESSAGE_OVERHEAD + math.ceil(len(content) / chars_per_token)
        else:
            text = content if type(content) is str else _text_of(content, index)
            total += MESSAGE_OVERHEAD + _count_text(text, chars_per_token, encoding)
        name = message.get("name")
        if isinstance(name, str):
            total += _count_text(name, chars_per_token, encoding)
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
    return money_cost_of(model, count_tokens(prompt, model), output_tokens)
