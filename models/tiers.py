"""Value tiers by customer lifetime value, with hysteresis against flapping."""

from __future__ import annotations

from dataclasses import dataclass

from crmstream.schemas.outputs import Tier

#: Tiers from lowest to highest value.
TIERS: tuple[Tier, ...] = ("bronze", "silver", "gold", "platinum")


@dataclass(frozen=True)
class TierPolicy:
    """Decides a customer's tier from their CLV.

    A customer is promoted as soon as their CLV reaches a tier's threshold, and demoted
    only when it falls below ``threshold * (1 - hysteresis)``: a CLV that oscillates just
    around a boundary therefore does not produce a stream of tier changes.

    Parameters
    ----------
    silver, gold, platinum : float
        CLV thresholds (in the base currency) of the three upper tiers; bronze starts at 0.
    hysteresis : float
        Fraction of a threshold that CLV must fall below it before a demotion, in [0, 1).

    Examples
    --------
    >>> policy = TierPolicy(silver=100, gold=500, platinum=2000, hysteresis=0.1)
    >>> policy.decide("bronze", 120.0)
    'silver'
    >>> policy.decide("silver", 95.0)   # within the hysteresis band: stays
    'silver'
    >>> policy.decide("silver", 89.0)   # below 100 * 0.9: demoted
    'bronze'
    >>> policy.decide("bronze", 2500.0) # promotions may skip tiers
    'platinum'
    """

    silver: float = 100.0
    gold: float = 500.0
    platinum: float = 2000.0
    hysteresis: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.silver < self.gold < self.platinum:
            raise ValueError(
                "tier thresholds must satisfy 0 < silver < gold < platinum, got "
                f"{self.silver}, {self.gold}, {self.platinum}"
            )
        if not 0 <= self.hysteresis < 1:
            raise ValueError(f"hysteresis must be in [0, 1), got {self.hysteresis}")

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The CLV at which each tier in :data:`TIERS` begins."""
        return (0.0, self.silver, self.gold, self.platinum)

    def decide(self, current: Tier, clv: float) -> Tier:
        """Return the tier a customer in ``current`` belongs to at ``clv``.

        Examples
        --------
        >>> TierPolicy().decide("gold", 460.0)
        'gold'
        >>> TierPolicy().decide("gold", 449.0)
        'silver'
        """
        rank = TIERS.index(current)
        thresholds = self.thresholds
        reached = max(i for i, threshold in enumerate(thresholds) if clv >= threshold or i == 0)
        if reached >= rank:
            return TIERS[reached]
        floor = 1.0 - self.hysteresis
        kept = max(i for i in range(rank + 1) if clv >= thresholds[i] * floor or i == 0)
        return TIERS[kept]

    def reason(self, from_tier: Tier, to_tier: Tier, clv: float) -> str:
        """Explain a transition in one sentence for humans.

        Examples
        --------
        >>> TierPolicy().reason("bronze", "silver", 120.0)
        'clv 120.00 reached the silver threshold 100.00'
        >>> TierPolicy().reason("silver", "bronze", 80.0)
        'clv 80.00 fell below 90.00 (silver threshold 100.00 less 10% hysteresis)'
        """
        if TIERS.index(to_tier) > TIERS.index(from_tier):
            threshold = self.thresholds[TIERS.index(to_tier)]
            return f"clv {clv:.2f} reached the {to_tier} threshold {threshold:.2f}"
        threshold = self.thresholds[TIERS.index(to_tier) + 1]
        lowered = threshold * (1.0 - self.hysteresis)
        return (
            f"clv {clv:.2f} fell below {lowered:.2f} ({TIERS[TIERS.index(to_tier) + 1]} "
            f"threshold {threshold:.2f} less {self.hysteresis:.0%} hysteresis)"
        )
