"""Money and time at the edge: every amount becomes a ``Decimal`` and every timestamp an aware UTC datetime once,
where it enters the SDK, and stays so inward."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, getcontext, localcontext
from typing import Any, TypeVar

__all__ = [
    "ATTO",
    "EXACT_DIGITS",
    "MAX_AMOUNT",
    "MIN_AMOUNT",
    "MONEY_SCALE",
    "ZERO",
    "atto_of",
    "dollars",
    "from_atto",
    "in_exact_context",
    "in_wide_context",
    "round_money",
    "tidy",
    "to_amount",
    "to_money",
    "to_utc",
    "wide_context",
]

#: Decimal places kept for money everywhere (stores use DECIMAL(38, 18)); a millionth of a cent per token needs 14.
MONEY_SCALE = 18
ZERO = Decimal(0)
#: Amounts a store can keep are below this in magnitude: DECIMAL(38, 18) leaves 20 digits before the point.
MAX_AMOUNT = Decimal(10) ** 20
#: Its negative, made once here: ``-MAX_AMOUNT`` on a call would be computed in the caller's context (one of a small
#: ``Emax`` raises ``Overflow``).
MIN_AMOUNT = -MAX_AMOUNT
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
# Rounding to the quantum happens in a context wide enough never to round or trap on the way (the default has 28
# digits, too few for a large amount with 18 places).
_WIDE = Context(prec=80)
#: Digits a decimal context needs to add and subtract amounts below 10**10 at money's 18 places without rounding (the
#: default context's 28). Budgets keep running figures with ``+`` and ``-``, which round to the caller's context:
#: where a call runs in a narrower one (``localcontext()`` with ``prec=6``, a thread's context changed in place), their
#: steps run in ``wide_context()`` instead (checked with ``getcontext().prec < EXACT_DIGITS``, ~45 ns).
EXACT_DIGITS = 28

F = TypeVar("F", bound=Callable[..., Any])


def wide_context() -> AbstractContextManager[Context]:
    """A context of 80 digits for the calling thread until the block ends: sums of amounts never round in it.

    >>> with wide_context():
    ...     Decimal("0.1234567") + Decimal("1E-18")
    Decimal('0.123456700000000001')
    """
    return localcontext(_WIDE)


def in_exact_context(method: F) -> F:
    """``method`` run in ``wide_context()`` when the caller's decimal context has fewer than ``EXACT_DIGITS`` digits
    (for a budget's figures read or settled outside the per-call path, which checks inline).

    >>> half = in_exact_context(lambda a: a / 2)
    >>> with localcontext(Context(prec=2)):
    ...     half(Decimal("0.0123"))
    Decimal('0.00615')
    """

    @functools.wraps(method)
    def exactly(*args: Any, **kwargs: Any) -> Any:
        if getcontext().prec >= EXACT_DIGITS:
            return method(*args, **kwargs)
        with localcontext(_WIDE):
            return method(*args, **kwargs)

    return exactly  # type: ignore[return-value]


def in_wide_context(method: F) -> F:
    """``method`` run in ``wide_context()`` unless the caller's decimal context is as wide already: for a figure read
    off a budget, whose limit less what is committed may need more digits than ``EXACT_DIGITS`` (up to 39 for
    amounts below ``MAX_AMOUNT``). Reads only: the per-call path checks ``EXACT_DIGITS`` inline.

    >>> less = in_wide_context(lambda a, b: a - b)
    >>> less(Decimal("100000000000"), Decimal("12345678901.123456789012345678"))
    Decimal('87654321098.876543210987654322')
    """

    @functools.wraps(method)
    def widely(*args: Any, **kwargs: Any) -> Any:
        if getcontext().prec >= _WIDE.prec:
            return method(*args, **kwargs)
        with localcontext(_WIDE):
            return method(*args, **kwargs)

    return widely  # type: ignore[return-value]


def to_money(value: object, field: str = "amount") -> Decimal:
    """Return ``value`` as a finite ``Decimal``; floats go through ``str()`` so ``0.1`` stays ``0.1``.

    Amounts with more than ``MONEY_SCALE`` decimal places are rounded half-even to that scale, so that every store
    holds exactly the same value.

    >>> to_money(0.1)
    Decimal('0.1')
    >>> to_money("nan")
    Traceback (most recent call last):
    ...
    ValueError: amount must be a finite number, got 'nan'
    """
    if type(value) is Decimal:
        dec = value
    elif isinstance(value, bool):
        raise TypeError(f"{field} must be a number, got {value!r}")
    elif isinstance(value, (int, Decimal)):
        dec = Decimal(value)
    elif isinstance(value, float):
        dec = Decimal(str(value))
    elif isinstance(value, str):
        try:
            dec = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{field} must be a number, got {value!r}") from None
    else:
        raise TypeError(f"{field} must be a Decimal, int, float or numeric string, got {value!r}")
    if not dec.is_finite():
        raise ValueError(f"{field} must be a finite number, got {value!r}")
    try:
        rounded = _WIDE.quantize(dec, _QUANTUM)
    except InvalidOperation:  # over 10**61: no digits below the quantum to round away at this size
        return dec
    return dec if rounded == dec else _WIDE.normalize(rounded)


def tidy(amount: Decimal) -> Decimal:
    """Drop trailing zeros (``3.5000000`` -> ``3.5``) without turning ``100`` into ``1E+2``; never rounds (in
    80 digits, not the caller's context: its default 28, or fewer set in a notebook, would round a large amount).
    It is the one form of a sum of money that every store returns, so equal sums print alike.

    >>> with localcontext(Context(prec=8)):
    ...     tidy(Decimal("12345678901.1234567890123456780")), tidy(Decimal("1.2E+3"))
    (Decimal('12345678901.123456789012345678'), Decimal('1200'))
    """
    if amount == amount.to_integral_value():
        return _WIDE.quantize(amount, _ONE)
    return _WIDE.normalize(amount)


_ONE = Decimal(1)


def round_money(value: Decimal) -> Decimal:
    """A finite ``Decimal`` computed from amounts (a mean, a share) rounded half-even to ``MONEY_SCALE`` places, so
    that adding it to amounts and taking it away again is exact (a 28-digit quotient would round in those sums).

    >>> round_money(Decimal("0.01") / 3)
    Decimal('0.003333333333333333')
    """
    rounded = _WIDE.quantize(value, _QUANTUM)
    return value if rounded == value else rounded  # (an exact one as it was: 0.0025, not 0.002500000000000000)


#: Units of money's last place in a dollar: the per-call path counts amounts as ints of ``10**-MONEY_SCALE`` USD
#: ("atto-dollars"), where one addition costs a quarter of a Decimal's and no decimal context can round it.
ATTO = 10**MONEY_SCALE
_ATTO_UNIT = Decimal(1).scaleb(-MONEY_SCALE)


def atto_of(amount: Decimal, rounding: str = ROUND_HALF_EVEN) -> int:
    """``amount`` in units of ``10**-MONEY_SCALE`` (exact for an amount as stores keep it; one of more places is
    rounded by ``rounding``, half-even unless said: ``ROUND_FLOOR`` for a limit that an int must not pass).

    >>> atto_of(Decimal("0.0035"))
    3500000000000000
    """
    scaled = amount.scaleb(MONEY_SCALE, _WIDE)
    whole = int(scaled)
    return whole if whole == scaled else int(scaled.to_integral_value(rounding, _WIDE))


def from_atto(atto: int) -> Decimal:
    """``atto`` units of ``10**-MONEY_SCALE`` as a Decimal without trailing zeros (``100``, not ``1E+2``).

    >>> from_atto(3500000000000000), from_atto(2 * ATTO)
    (Decimal('0.0035'), Decimal('2'))
    """
    if atto % ATTO:
        return _WIDE.normalize(_WIDE.multiply(_ATTO_UNIT, atto))
    return Decimal(atto // ATTO)


def to_amount(value: object, field: str = "amount") -> Decimal:
    """``to_money`` for an amount that will be stored: it must also be below ``MAX_AMOUNT`` in magnitude.

    >>> to_amount("1e30")
    Traceback (most recent call last):
    ...
    ValueError: amount must be below 10**20 in magnitude (stores keep DECIMAL(38, 18)), got '1e30'
    """
    dec = to_money(value, field)
    if not MIN_AMOUNT < dec < MAX_AMOUNT:
        raise ValueError(f"{field} must be below 10**20 in magnitude (stores keep DECIMAL(38, 18)), got {value!r}")
    return dec


def to_utc(value: datetime, field: str = "timestamp") -> datetime:
    """Return ``value`` as an aware UTC datetime; a naive one is taken as UTC already.

    >>> to_utc(datetime(2024, 1, 1))
    datetime.datetime(2024, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    if not isinstance(value, datetime):
        raise TypeError(f"{field} must be a datetime, got {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    if value.tzinfo is timezone.utc:
        return value
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00+01:00 is a valid datetime whose UTC time is not
        raise ValueError(
            f"{field} {value.isoformat()} is out of range in UTC (datetimes run from 0001-01-01 to 9999-12-31 UTC)"
        ) from None


def dollars(*amounts: Decimal) -> tuple[str, ...]:
    """``amounts`` as dollar texts with one number of decimals for all, so that figures told together compare at a
    glance: two for whole cents, else as many as the finest amount needs, at most six (rounded half even).

    >>> dollars(Decimal("0.7"), Decimal("1.00"), Decimal("0.3"))
    ('$0.70', '$1.00', '$0.30')
    >>> dollars(Decimal("0.9964525"), Decimal("1"))
    ('$0.996452', '$1.000000')
    """
    # Precision for every digit of each amount and up to six places: a limit of 10**30 is as exact as one of 10.
    digits = getcontext().prec
    for amount in amounts:
        if amount.is_finite() and amount:
            digits = max(digits, len(amount.as_tuple().digits), amount.adjusted() + 8)
    context = Context(prec=digits, rounding=ROUND_HALF_EVEN)
    places = 2
    for amount in amounts:
        exponent = amount.normalize(context).as_tuple().exponent
        if isinstance(exponent, int):
            places = max(places, min(-exponent, 6))
    quantum = Decimal(1).scaleb(-places)
    return tuple(f"${amount.quantize(quantum, context=context):,}" for amount in amounts)
