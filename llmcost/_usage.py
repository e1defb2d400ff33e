"""Token counts of one call, in the genai-prices convention."""

from __future__ import annotations

import attrs

__all__ = ["Usage"]


def _count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{attribute.name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")


def _as_count(value: object) -> object:
    # Some SDKs report counts as floats (LangChain, JSON); accept only whole numbers.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@attrs.frozen
class Usage:
    """Tokens used by one call (or several, added with ``+``).

    ``input_tokens`` counts every input token, cached ones included; ``cache_read_tokens`` and
    ``cache_write_tokens`` are parts of it. ``output_tokens`` counts every output token; ``reasoning_tokens`` is
    part of it. Negative counts, or parts larger than their whole, raise ``ValueError``.

    Example::

        >>> u = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1000)
        >>> (u + Usage(input_tokens=10)).total_tokens
        1510
    """

    input_tokens: int = attrs.field(default=0, converter=_as_count, validator=_count)
    output_tokens: int = attrs.field(default=0, converter=_as_count, validator=_count)
    cache_read_tokens: int = attrs.field(default=0, converter=_as_count, validator=_count)
    cache_write_tokens: int = attrs.field(default=0, converter=_as_count, validator=_count)
    reasoning_tokens: int = attrs.field(default=0, converter=_as_count, validator=_count)

    def __attrs_post_init__(self) -> None:
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                "cache_read_tokens + cache_write_tokens must not exceed input_tokens, got "
                f"{self.cache_read_tokens} + {self.cache_write_tokens} > input_tokens={self.input_tokens}"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(
                f"reasoning_tokens must not exceed output_tokens, got reasoning_tokens={self.reasoning_tokens} "
                f"> output_tokens={self.output_tokens}"
            )

    @classmethod
    def _trusted(cls, inp: int, out: int, cache_read: int, cache_write: int, reasoning: int) -> Usage:
        """Build from counts already known to be valid non-negative ints with parts within wholes (hot path)."""
        usage = _new(cls)
        _set_input(usage, inp)
        _set_output(usage, out)
        _set_cache_read(usage, cache_read)
        _set_cache_write(usage, cache_write)
        _set_reasoning(usage, reasoning)
        return usage

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens (cache and reasoning tokens are already inside those)."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )


# The slots' own setters, called directly by ``_trusted`` (faster than object.__setattr__ on the hot path).
_new = object.__new__
_setters = {a.name: vars(Usage)[a.name].__set__ for a in attrs.fields(Usage)}
_set_input = _setters["input_tokens"]
_set_output = _setters["output_tokens"]
_set_cache_read = _setters["cache_read_tokens"]
_set_cache_write = _setters["cache_write_tokens"]
_set_reasoning = _setters["reasoning_tokens"]
