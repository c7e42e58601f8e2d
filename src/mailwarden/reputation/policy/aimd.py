"""Per-lane sending rate: additive increase, multiplicative decrease (AIMD), pure.

Rules (all numbers in :class:`AimdSettings`):

- **Bounds.** A lane runs between the provider's ``floor_per_hour`` and a *scaled cap*.
  :func:`score_factor` turns the lane's reputation score into a factor in [0.1, 1];
  the scaled base is ``max(floor, messages_per_hour × factor)`` and the scaled cap
  ``max(scaled base, cap_per_hour × factor)``. The floor is never scaled.
- **Cut.** A reply of a class in :data:`CUT_CLASSES` (``throttled``, and ``reputation_block``:
  a receiver that blocks on reputation is also asking us to slow down) sets
  ``rate = max(floor, rate × decrease)``, at most once per ``cut_cooldown`` seconds: a burst
  of parallel 421s from one slow-down is one signal, not twenty. Every such reply (cut or
  not) ends the run of successes.
- **Increase.** Each ``delivered`` adds one to the run; after ``increase_after`` in a row
  the rate steps up by ``scaled base × increase_fraction`` and the run restarts. The climb
  goes back to the scaled base and then, at the same pace, on up to the scaled cap: the cap
  is where probing stops, the base is only where a new lane starts. No step is taken within
  ``cut_cooldown`` of a cut (deliveries already in flight at the cut prove nothing).
- **Neutral replies.** Any other class (greylisting, unknown mailboxes, network errors,
  content rejections, ...) says nothing about our rate: it neither cuts nor counts, and it
  does not break the run of successes.
- **Retry-After.** A reply that names a wait sets ``not_before = now + min(wait,
  max_retry_after)`` (never earlier than an existing ``not_before``).
- **Re-bounding.** If the bounds moved (score fell, operator changed the limits), the
  rate is first clamped into them, with its own action.

Actions are returned only when something changed; several changes in one call become one
action whose kind is the most important (``throttle`` > ``retry_after`` > ``ramp``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.reputation.policy.actions import Action, duration, iso
from mailwarden.reputation.policy.limits import ProviderLimits

#: Reply classes that cut the rate: the receiver asks us to slow down.
CUT_CLASSES = frozenset({"throttled", "reputation_block"})


@dataclass(frozen=True, slots=True)
class AimdSettings:
    decrease: float = 0.5  # multiplicative cut on a throttled reply
    increase_after: int = 50  # successes in a row before one additive step
    increase_fraction: float = 0.05  # step = scaled base × this
    cut_cooldown: float = 60.0  # at most one cut per this many seconds
    max_retry_after: float = 3600.0
    score_full: float = 80.0  # scores at or above this: factor 1
    score_zero: float = 20.0  # scores at or below this: factor min_factor
    min_factor: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.decrease < 1.0:
            raise ValueError(f"aimd.decrease must be in (0, 1), got {self.decrease}")
        if self.increase_after < 1 or self.increase_fraction <= 0.0:
            raise ValueError("aimd.increase_after must be >= 1 and increase_fraction > 0")
        if self.cut_cooldown < 0.0 or self.max_retry_after < 0.0:
            raise ValueError("aimd.cut_cooldown and max_retry_after must not be negative")
        if not self.score_zero < self.score_full or not 0.0 < self.min_factor <= 1.0:
            raise ValueError("aimd: need score_zero < score_full and 0 < min_factor <= 1")


@dataclass(frozen=True, slots=True)
class RateState:
    rate: float  # msg/h currently allowed
    successes: int  # run of deliveries since the last cut/step
    last_cut: float  # epoch seconds, 0 = never
    not_before: float  # epoch seconds: honour a "retry after N"; no sends before this


def score_factor(score: float | None, s: AimdSettings = AimdSettings()) -> float:
    """Rate factor for a score: 1 at ``score_full`` (80) and above or with no score, falling
    linearly to ``min_factor`` (0.1) at ``score_zero`` (20) and below; 50 → 0.55."""
    if score is None or score >= s.score_full:
        return 1.0
    if score <= s.score_zero:
        return s.min_factor
    return s.min_factor + (1.0 - s.min_factor) * (score - s.score_zero) / (
        s.score_full - s.score_zero
    )


def bounds(
    limits: ProviderLimits, score: float | None, s: AimdSettings = AimdSettings()
) -> tuple[float, float, float]:
    """(floor, scaled base, scaled cap) in msg/h."""
    f = score_factor(score, s)
    floor = limits.floor_per_hour
    base = max(floor, limits.messages_per_hour * f)
    return floor, base, max(base, limits.cap_per_hour * f)


def initial(
    limits: ProviderLimits, score: float | None = None, *, s: AimdSettings = AimdSettings()
) -> RateState:
    """A new lane starts at the scaled base."""
    return RateState(bounds(limits, score, s)[1], 0, 0.0, 0.0)


def _fmt(rate: float) -> str:
    return f"{rate:.0f}"


def _rebound(
    st: RateState, floor: float, cap: float, score: float | None
) -> tuple[RateState, Action | None]:
    if floor <= st.rate <= cap:
        return st, None
    new = min(max(st.rate, floor), cap)
    why = "cap" if new < st.rate else "floor"
    scored = f" (score {score:.0f})" if score is not None else ""
    act = Action(
        "throttle" if new < st.rate else "ramp",
        f"limits changed{scored}: rate {_fmt(st.rate)} -> {_fmt(new)} msg/h ({why})",
        {"rate_before": st.rate, "rate": new, "floor": floor, "cap": cap}
        | ({"score": score} if score is not None else {}),
    )
    return RateState(new, st.successes, st.last_cut, st.not_before), act


def _cut(
    st: RateState, reply_class: str, now: float, floor: float, reply: str, s: AimdSettings
) -> tuple[RateState, Action | None]:
    if st.last_cut > 0.0 and now - st.last_cut < s.cut_cooldown:
        return RateState(st.rate, 0, st.last_cut, st.not_before), None
    new = max(floor, st.rate * s.decrease)
    nst = RateState(new, 0, now, st.not_before)
    if new == st.rate:
        return nst, None
    what = f"{reply} {reply_class}" if reply else reply_class
    inputs: dict[str, float | int | str] = {
        "reply_class": reply_class,
        "rate_before": st.rate,
        "rate": new,
        "floor": floor,
    }
    if reply:
        inputs["reply"] = reply
    return nst, Action("throttle", f"{what}: rate {_fmt(st.rate)} -> {_fmt(new)} msg/h", inputs)


def _count(
    st: RateState, now: float, base: float, cap: float, s: AimdSettings
) -> tuple[RateState, Action | None]:
    run = st.successes + 1
    cooling = st.last_cut > 0.0 and now - st.last_cut < s.cut_cooldown
    if run < s.increase_after or cooling:
        return RateState(st.rate, run, st.last_cut, st.not_before), None
    new = min(cap, st.rate + base * s.increase_fraction)
    nst = RateState(new, 0, st.last_cut, st.not_before)
    if new == st.rate:
        return nst, None
    return nst, Action(
        "ramp",
        f"{run} deliveries in a row: rate {_fmt(st.rate)} -> {_fmt(new)} msg/h "
        f"(base {_fmt(base)}, cap {_fmt(cap)})",
        {"successes": run, "rate_before": st.rate, "rate": new, "base": base, "cap": cap},
    )


def _retry(
    st: RateState, now: float, retry_after: float, s: AimdSettings
) -> tuple[RateState, Action | None]:
    wait = min(max(retry_after, 0.0), s.max_retry_after)
    until = now + wait
    if until <= st.not_before:
        return st, None
    return RateState(st.rate, st.successes, st.last_cut, until), Action(
        "retry_after",
        f"server asked to wait {duration(retry_after)}: no sends before {iso(until)}",
        {"retry_after": retry_after, "wait": wait, "not_before": until},
    )


_PRIORITY = ("throttle", "retry_after", "ramp")


def _combine(actions: list[Action]) -> Action | None:
    if not actions:
        return None
    if len(actions) == 1:
        return actions[0]
    ordered = sorted(actions, key=lambda a: _PRIORITY.index(a.kind))
    inputs: dict[str, float | int | str] = {}
    for a in reversed(ordered):
        inputs.update(a.inputs)
    return Action(ordered[0].kind, "; ".join(a.reason for a in ordered), inputs)


def on_result(
    st: RateState,
    reply_class: str,
    *,
    now: float,
    limits: ProviderLimits,
    score: float | None = None,
    retry_after: float | None = None,
    reply: str = "",
    s: AimdSettings = AimdSettings(),
) -> tuple[RateState, Action | None]:
    """Feed one delivery result (its reply class; ``reply`` is the code for the reason,
    e.g. ``"421 4.7.28"``) into the lane's rate; see the module docstring for the rules."""
    floor, base, cap = bounds(limits, score, s)
    actions: list[Action] = []
    st, act = _rebound(st, floor, cap, score)
    actions += [act] if act else []
    if reply_class in CUT_CLASSES:
        st, act = _cut(st, reply_class, now, floor, reply, s)
        actions += [act] if act else []
    elif reply_class == "delivered":
        st, act = _count(st, now, base, cap, s)
        actions += [act] if act else []
    if retry_after is not None:
        st, act = _retry(st, now, retry_after, s)
        actions += [act] if act else []
    return st, _combine(actions)
