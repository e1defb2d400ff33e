"""Pydantic's validation errors told in the client's terms: the field as the client wrote it (``amount``,
``usage.input_tokens``), never a step of pydantic's own (the member of a union it tried: ``RecordIn``,
``list[RecordIn]``), and the error of the shape the client sent (a list's item, not the single record it is not).

Example::

    >>> errors = [{"type": "int_parsing", "loc": ("body", "list[RecordIn]", 1, "usage", "input_tokens"),
    ...            "msg": "Input should be a valid integer", "input": "x"}]
    >>> client_error(errors, [{"amount": "1"}, {"amount": "1", "usage": {"input_tokens": "x"}}])
    ("record 1: usage.input_tokens: Input should be a valid integer, got 'x'", 'usage.input_tokens')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["client_error"]

#: Where FastAPI says a value came from: the first step of every location, not part of the field.
_SOURCES = ("body", "query", "path", "header", "cookie")


def client_error(errors: Sequence[Mapping[str, Any]], body: Any) -> tuple[str, str | None]:
    """The message and the field (``None`` for the whole body) of the first of ``errors`` that concerns the shape
    ``body`` has: when a body may be one record or a list, a list's errors, not the record's."""
    if not errors:
        return "body: invalid", None
    found = [(_walk(error, body), error) for error in errors]
    ((path, _), first) = next((item for item in found if item[0][1]), found[0])
    given = first.get("input")
    message = str(first.get("msg", "invalid"))
    if not path:  # the whole body is wrong: say every shape it could have had ("... or a valid list")
        others = [str(e.get("msg", "")) for (p, _), e in found if not p and e is not first]
        message = ", or ".join([message, *(m.removeprefix("Input should be ") for m in others if m != message)])
    index = ""
    if path and isinstance(path[0], int):  # an item of a list body (only records come as a list)
        index, path = f"record {path[0]}: ", path[1:]
    field = ".".join(str(step) for step in path) or None
    shown = "" if isinstance(given, dict) and field else f", got {given!r}"
    where = f"{field}: " if field else "" if index else "body: "  # "record 0: Input should be ..." for an item
    return f"{index}{where}{message}{shown}", field


def _walk(error: Mapping[str, Any], body: Any) -> tuple[list[str | int], bool]:
    """The steps of ``error``'s location that are the client's (keys and indexes of what was sent), and whether
    each union member pydantic tried on the way has the shape of the value there (a list member for a list)."""
    loc = list(error.get("loc", ()))
    if not loc or loc[0] not in _SOURCES:
        return [str(step) for step in loc], True
    if loc[0] != "body":
        return [str(step) for step in loc[1:]], True  # a query or path parameter: its name
    path: list[str | int] = []
    fits = True
    value = body
    last = len(loc) - 1
    for n, step in enumerate(loc[1:], start=1):
        if _within(value, step):
            path.append(step)
            value = value[step]
        elif n == last and error.get("type") == "missing":
            path.append(str(step))  # a required field the client left out
        else:  # a step of pydantic's own: the union member it tried on ``value``
            fits = fits and str(step).startswith("list[") == isinstance(value, list)
    return path, fits


def _within(value: Any, step: Any) -> bool:
    """Whether ``step`` is an index of the list ``value`` or a key of the object ``value``."""
    if isinstance(value, list):
        return isinstance(step, int) and 0 <= step < len(value)
    return isinstance(value, dict) and isinstance(step, str) and step in value
