"""Conversion of purchase amounts into the base currency that profiles are kept in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


class UnsupportedCurrency(ValueError):
    """A purchase is in a currency with no configured exchange rate."""


@dataclass(frozen=True)
class Currencies:
    """Exchange rates into one base currency.

    Examples
    --------
    >>> fx = Currencies("USD", {"EUR": 1.1})
    >>> fx.to_base(10.0, "USD"), fx.to_base(10.0, "EUR")
    (10.0, 11.0)
    >>> try:
    ...     fx.to_base(1.0, "JPY")
    ... except UnsupportedCurrency as exc:
    ...     print(exc)
    no exchange rate from JPY to USD
    """

    base: str = "USD"
    rates: Mapping[str, float] = field(default_factory=dict)

    def to_base(self, amount: float, currency: str) -> float:
        """Return ``amount`` in ``currency`` expressed in the base currency."""
        if currency == self.base:
            return amount
        rate = self.rates.get(currency)
        if rate is None:
            raise UnsupportedCurrency(f"no exchange rate from {currency} to {self.base}")
        return amount * rate
