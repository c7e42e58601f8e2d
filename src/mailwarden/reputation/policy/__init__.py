"""Pure reputation policy: lane and tenant state + new facts + settings → new state + actions.

No awaits, no database, no clock: time comes in as ``now`` (epoch seconds). Every state is
a frozen dataclass; every transition returns a new state and, when something changed, an
:class:`Action` saying what and why. Functions whose names repeat across modules
(``admit``, ``on_result``, ``evaluate``) are used through their module:
``policy.breaker.admit(...)``, ``policy.warmup.admit(...)``, ``policy.aimd.on_result(...)``.
"""

from mailwarden.reputation.policy import aimd, breaker, guardrails, limits, tokens, warmup
from mailwarden.reputation.policy.actions import KINDS, Action
from mailwarden.reputation.policy.aimd import AimdSettings, RateState, score_factor
from mailwarden.reputation.policy.breaker import (
    BreakerSettings,
    BreakerState,
    Phase,
    counting_since,
    trip,
)
from mailwarden.reputation.policy.guardrails import (
    GuardrailSettings,
    TenantVerdict,
    check_tenant,
)
from mailwarden.reputation.policy.limits import LimitsTable, ProviderLimits
from mailwarden.reputation.policy.tokens import Bucket, take
from mailwarden.reputation.policy.warmup import (
    Schedule,
    WarmupSettings,
    WarmupState,
    load_schedules,
    roll,
    set_day,
    step_back,
)

__all__ = [
    "KINDS",
    "Action",
    "AimdSettings",
    "BreakerSettings",
    "BreakerState",
    "Bucket",
    "GuardrailSettings",
    "LimitsTable",
    "Phase",
    "ProviderLimits",
    "RateState",
    "Schedule",
    "TenantVerdict",
    "WarmupSettings",
    "WarmupState",
    "aimd",
    "breaker",
    "check_tenant",
    "counting_since",
    "guardrails",
    "limits",
    "load_schedules",
    "roll",
    "score_factor",
    "set_day",
    "step_back",
    "take",
    "tokens",
    "trip",
    "warmup",
]
