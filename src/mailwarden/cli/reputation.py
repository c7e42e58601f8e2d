"""`mailwarden reputation ...`: see why mail is slow, pause and resume, set warm-up days.

Reads go to the store (lane states are saved by the running server every few seconds;
windows and scores are replayed from the stored events). Writes (pause, resume, warm-up
day) are rows the running server applies within one tick; each is logged with its author.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from mailwarden.app import Services, build_engine
from mailwarden.cli.common import (
    EXIT_ERROR,
    ConfigOpt,
    JsonOpt,
    fail,
    print_rows,
    run_with_services,
)
from mailwarden.reputation.engine import ReputationEngine, lane_view
from mailwarden.reputation.pauses import check_target

reputation_app = typer.Typer(
    help="The reputation engine: lanes, scores, breakers, warm-up, alerts.", no_args_is_help=True
)
warmup_app = typer.Typer(help="Warm-up schedules of new lanes.", no_args_is_help=True)
alerts_app = typer.Typer(help="Alerts raised by the reputation engine.", no_args_is_help=True)
reputation_app.add_typer(warmup_app, name="warmup")
reputation_app.add_typer(alerts_app, name="alerts")

TargetArg = Annotated[
    str,
    typer.Argument(
        help="tenant:ACCOUNT, domain:DOMAIN, ip:ADDRESS, provider:NAME or lane:DOMAIN|IP|PROVIDER."
    ),
]


def _operator() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser() or "operator"


ByOpt = Annotated[str, typer.Option("--by", help="Who makes the change (logged).")]


def _target(t: str) -> str:
    try:
        return check_target(t)
    except ValueError as exc:
        raise fail(str(exc), EXIT_ERROR) from None


async def _offline_engine(s: Services) -> ReputationEngine:
    engine = build_engine(s)
    await engine.load()
    return engine


# -- classify ---------------------------------------------------------------------------
@reputation_app.command("classify")
def classify(
    code: Annotated[int | None, typer.Option(help="Basic reply code (none: no reply).")] = None,
    enhanced: Annotated[str, typer.Option(help="RFC 3463 enhanced code, e.g. 4.7.28.")] = "",
    text: Annotated[str, typer.Option(help="The reply text as logged.")] = "",
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="YAML list of replies (code, enhanced, text); one JSON line each."
        ),
    ] = None,
    rules: Annotated[
        Path | None, typer.Option(help="Extra rule file, tried before the built-in rules.")
    ] = None,
) -> None:
    """Classify a remote SMTP reply and show the rule that matched."""
    from mailwarden.reputation.classify import Classifier, RuleError

    try:
        classifier = Classifier.load(extra=rules)
    except (RuleError, OSError) as exc:
        raise fail(str(exc), EXIT_ERROR) from None
    if file is None:
        if code is None and not enhanced and not text:
            raise fail("give --code/--enhanced/--text, or --file", EXIT_ERROR)
        c = classifier.classify(code, enhanced, text)
        extra = f" (retry after {c.retry_after:g} s)" if c.retry_after is not None else ""
        typer.echo(f"{c.cls.value}\trule={c.rule}{extra}")
        return
    try:
        items = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise fail(f"{file}: {exc}", EXIT_ERROR) from None
    if not isinstance(items, list):
        raise fail(f"{file}: expected a YAML list of replies", EXIT_ERROR)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise fail(f"{file}: entry {i + 1} is not a mapping", EXIT_ERROR)
        raw_code = item.get("code")
        c = classifier.classify(
            int(raw_code) if raw_code is not None else None,
            str(item.get("enhanced") or ""),
            str(item.get("text") or ""),
        )
        row: dict[str, Any] = {"class": c.cls.value, "rule": c.rule}
        if c.retry_after is not None:
            row["retry_after"] = c.retry_after
        for key in ("code", "enhanced", "text", "provider"):
            if key in item:
                row[key] = item[key]
        if "class" in item:
            row["expected"] = item["class"]
        sys.stdout.write(json.dumps(row) + "\n")


# -- status / lanes / explain ----------------------------------------------------------------
@reputation_app.command("status")
def status(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Lanes by breaker state, paused targets, scores and open alerts."""

    async def go(s: Services) -> dict[str, Any]:
        engine = await _offline_engine(s)
        await s.pauses.refresh()
        lanes = engine.lanes_view()
        now = engine.clock.now().timestamp()
        scores = {
            key: round(engine.score_now(key).value, 1)
            for key in engine.windows.keys()  # noqa: SIM118 (a method, not a dict)
            if key.startswith(("domain:", "ip:", "tenant:"))
        }
        alerts = await s.alerts.list("active")
        return {
            "lanes": len(lanes),
            "breakers": {
                phase: sum(1 for x in lanes if x["breaker"] == phase)
                for phase in ("closed", "open", "half_open")
            }
            | {
                "identities_open": [
                    k for k, i in engine.identities.items() if i.breaker.phase.value != "closed"
                ]
            },
            "warming_up": [x["lane"] for x in lanes if x["warmup_day"] is not None],
            "paused": {t: dict(p) for t, p in s.pauses.active.items()},
            "scores": scores,
            "alerts": [a.as_dict() for a in alerts],
            "at": now,
        }

    data = run_with_services(config, go)
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    b = data["breakers"]
    typer.echo(
        f"lanes: {data['lanes']}  breakers closed {b['closed']}, open {b['open']}, "
        f"half-open {b['half_open']}; identities not closed: "
        f"{', '.join(b['identities_open']) or 'none'}"
    )
    typer.echo(f"warming up: {len(data['warming_up'])} lanes")
    for t, p in data["paused"].items():
        typer.echo(f"paused {t} by {p.get('actor')}: {p.get('reason')}")
    for k, v in sorted(data["scores"].items()):
        typer.echo(f"score {k}: {v}")
    for a in data["alerts"]:
        typer.echo(f"alert #{a['id']} [{a['severity']}] {a['status']}: {a['message']}")


@reputation_app.command("lanes")
def lanes(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every lane (sending domain | IP | provider) with its rate, breaker and warm-up."""

    async def go(s: Services) -> list[dict[str, Any]]:
        return (await _offline_engine(s)).lanes_view()

    rows = run_with_services(config, go)
    for r in rows:
        r["last_hour"] = " ".join(f"{k}={v}" for k, v in sorted(r["last_hour"].items()))
    cols = ["lane", "rate_per_hour", "base_per_hour", "breaker", "warmup_day", "warmup_cap"]
    print_rows(rows, [*cols, "sent_today", "last_hour"], as_json)


@reputation_app.command("explain")
def explain(target: TargetArg, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Why TARGET is slow or paused: state, counts, score with each input's cost, recent
    actions and what the engine would decide for one message now."""
    target = _target(target)

    async def go(s: Services) -> dict[str, Any]:
        engine = await _offline_engine(s)
        await s.pauses.refresh()
        engine.pauses = s.pauses
        now = engine.clock.now().timestamp()
        kind, _, value = target.partition(":")
        out: dict[str, Any] = {"target": target}
        out["counts"] = {  # targets are window keys ("lane:..." for a lane)
            span: engine.windows.totals(target, span, now) for span in ("1h", "24h", "7d", "30d")
        }
        if kind != "provider":
            score = engine.score_now(target if kind != "lane" else f"domain:{value.split('|')[0]}")
            out["score"] = {
                "value": round(score.value, 1),
                "sample": score.sample,
                "rates": dict(score.rates),
                "contributions": dict(score.contributions),
            }
        lanes = engine._lanes_matching(target)
        out["lanes"] = []
        for lane in lanes:
            view = lane_view(lane, engine.windows, now, engine.schedule)
            permit = engine.permit(lane, 1, "")
            view["decision_now"] = (
                "send" if permit.ok else f"hold: {permit.reason}" if permit.reason else "wait"
            )
            view["breaker_state"] = {
                "phase": lane.breaker.phase.value,
                "trips": lane.breaker.trips,
                "retry_at": lane.breaker.retry_at,
            }
            out["lanes"].append(view)
        ident = engine.identities.get(target)
        if ident is not None:
            out["breaker"] = {"phase": ident.breaker.phase.value, "trips": ident.breaker.trips}
        out["paused"] = s.pauses.find(target)
        out["actions"] = [
            {"at": a.at.isoformat(), "actor": a.actor, "kind": a.kind, "reason": a.reason}
            for a in await s.reputation_store.actions(target=target, limit=20)
        ]
        return out

    data = run_with_services(config, go)
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    typer.echo(f"{target}: {'PAUSED ' + data['paused'] if data['paused'] else 'not paused'}")
    for span, counts in data["counts"].items():
        typer.echo(f"  {span}: " + (" ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "-"))
    if "score" in data:
        sc = data["score"]
        parts = ", ".join(f"{k} -{v:.1f}" for k, v in sc["contributions"].items() if v)
        typer.echo(f"  score {sc['value']} from {sc['sample']} events ({parts or 'no costs'})")
    for lane in data["lanes"]:
        typer.echo(
            f"  lane {lane['lane']}: rate {lane['rate_per_hour']}/h (base "
            f"{lane['base_per_hour']}), breaker {lane['breaker']}, warm-up day "
            f"{lane['warmup_day'] or 'done'} cap {lane['warmup_cap'] or '-'}; now: "
            f"{lane['decision_now']}"
        )
    for a in data["actions"]:
        typer.echo(f"  {a['at']} {a['actor']} {a['kind']}: {a['reason']}")


# -- overrides --------------------------------------------------------------------------------
@reputation_app.command("pause")
def pause(
    target: TargetArg,
    reason: Annotated[str, typer.Option(help="Why (logged).")] = "paused by an operator",
    by: ByOpt = "",
    config: ConfigOpt = None,
) -> None:
    """Hold all mail of TARGET in the queue (and refuse a tenant's submissions with 451)."""
    target = _target(target)
    actor = by or _operator()
    run_with_services(config, lambda s: s.pauses.pause(target, actor, reason))
    typer.echo(f"paused {target} ({actor}: {reason})")


@reputation_app.command("resume")
def resume(
    target: TargetArg,
    reason: Annotated[str, typer.Option(help="Why (logged).")] = "",
    by: ByOpt = "",
    config: ConfigOpt = None,
) -> None:
    """Lift a pause of TARGET and close its open breakers."""
    target = _target(target)
    actor = by or _operator()
    lifted = run_with_services(config, lambda s: s.pauses.resume(target, actor, reason))
    what = "pause lifted" if lifted else "no pause; breakers will be closed"
    typer.echo(f"resumed {target} ({what}) by {actor}")


@warmup_app.command("set")
def warmup_set(
    target: TargetArg,
    day: Annotated[int, typer.Argument(help="Warm-up day, 1 = first; past the end: warmed up.")],
    by: ByOpt = "",
    config: ConfigOpt = None,
) -> None:
    """Set the warm-up day of TARGET's lanes (a lane, or every lane of a domain/IP/provider)."""
    target = _target(target)
    actor = by or _operator()
    try:
        run_with_services(config, lambda s: s.pauses.set_warmup(target, day, actor))
    except ValueError as exc:
        raise fail(str(exc), EXIT_ERROR) from None
    typer.echo(f"warm-up of {target} set to day {day} by {actor}")


@reputation_app.command("log")
def action_log(
    target: Annotated[str, typer.Option(help="Only this target (or prefix).")] = "",
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 50,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The remediation log: every automatic action and override, newest first."""

    async def go(s: Services) -> list[dict[str, Any]]:
        return [
            {
                "at": a.at.isoformat(timespec="seconds"),
                "actor": a.actor,
                "kind": a.kind,
                "target": a.target,
                "reason": a.reason,
                "inputs": dict(a.inputs),
            }
            for a in await s.reputation_store.actions(target=target or None, limit=limit)
        ]

    print_rows(run_with_services(config, go), ["at", "actor", "kind", "target", "reason"], as_json)


# -- alerts ---------------------------------------------------------------------------------
@alerts_app.command("list")
def alerts_list(
    status: Annotated[str, typer.Option(help="active, open, acknowledged, resolved or all.")] = (
        "active"
    ),
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Alerts, newest first."""

    async def go(s: Services) -> list[dict[str, Any]]:
        return [a.as_dict() for a in await s.alerts.list(None if status == "all" else status)]

    cols = ["id", "type", "severity", "status", "count", "target", "message"]
    print_rows(run_with_services(config, go), cols, as_json)


def _alert_status(alert_id: int, ack: bool, by: str, config: Path | None) -> None:
    actor = by or _operator()

    async def go(s: Services) -> bool:
        fn = s.alerts.acknowledge if ack else s.alerts.close
        return await fn(alert_id, actor) is not None

    if not run_with_services(config, go):
        raise fail(f"no alert #{alert_id}", EXIT_ERROR)
    typer.echo(f"alert #{alert_id} {'acknowledged' if ack else 'resolved'} by {actor}")


@alerts_app.command("ack")
def alerts_ack(alert_id: int, by: ByOpt = "", config: ConfigOpt = None) -> None:
    """Acknowledge an alert (it stays until resolved)."""
    _alert_status(alert_id, True, by, config)


@alerts_app.command("resolve")
def alerts_resolve(alert_id: int, by: ByOpt = "", config: ConfigOpt = None) -> None:
    """Resolve an alert."""
    _alert_status(alert_id, False, by, config)
