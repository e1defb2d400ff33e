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
from ._prices import price_for
from ._usage import Usage

__all__ = ["CHARS_PER_TOKEN", "Estimate", "count_tokens", "estimate_cost"]

#: ASCII characters per token, by model family (measured ratios for English prose and code are 3.5 to 4.2).
CHARS_PER_TOKEN = {"openai": 4.0, "anthropic": 3.5, "google": 4.0, "mistral": 3.5, "default": 3.7}
MESSAGE_OVERHEAD = 3
REPLY_OVERHEAD = 3


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


def _encoding(model: str | None) -> Any:
    """A tiktoken encoding for an OpenAI model if one loads offline, else ``None`` (the answer is cached).

    tiktoken fetches its BPE files on first use unless they are cached locally; the load runs in a thread with a
    short deadline so a machine without network never waits long, and a failure is remembered for the process.
    """
    if _family(model) != "openai":
        return None
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


def _text_of(content: Any, field: str) -> str:
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


def _heuristic(text: str, model: str | None) -> int:
    if not text:
        return 0
    other = sum(1 for ch in text if ord(ch) > 127)
    ascii_chars = len(text) - other
    return math.ceil(ascii_chars / CHARS_PER_TOKEN[_family(model)]) + other


def _count_text(text: str, model: str | None) -> int:
    encoding = _encoding(model)
    if encoding is not None:
        return len(encoding.encode(text, disallowed_special=()))
    return _heuristic(text, model)


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
    if isinstance(text_or_messages, str):
        return _count_text(text_or_messages, model)
    if not isinstance(text_or_messages, Sequence):
        raise TypeError(f"text_or_messages must be a str or a list of message dicts, got {text_or_messages!r}")
    total = REPLY_OVERHEAD if text_or_messages else 0
    for index, message in enumerate(text_or_messages):
        if not isinstance(message, Mapping):
            raise TypeError(f"messages[{index}] must be a dict with 'role' and 'content', got {message!r}")
        total += MESSAGE_OVERHEAD
        total += _count_text(_text_of(message.get("content"), f"messages[{index}]['content']"), model)
        name = message.get("name")
        if isinstance(name, str):
            total += _count_text(name, model)
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
    price, _ = price_for(model)
    return Estimate(input_tokens, output_tokens, price.cost(Usage(input_tokens, output_tokens)))
