"""Reply classification: our provider-documented regression cases, the team's development
set, rule-file validation, operator overrides, retry hints and caching."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailwarden.reputation.classify import (
    Classification,
    Classifier,
    ReplyClass,
    RuleError,
    default_classifier,
    retry_after,
)
from shared_data import SHARED

OWN_CASES = Path(__file__).parents[1] / "data" / "reputation" / "replies.yaml"
DEV_SET = SHARED / "reputation" / "replies" / "replies.yaml"

# Development-set cases that genuinely conflict with general rules: index → reason.
# Each becomes a strict xfail, so a rule change that fixes one is noticed. At most 5.
KNOWN_MISSES: dict[int, str] = {}


def _load(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, list)
    return data


def _own_params() -> list[Any]:
    return [
        pytest.param(case, id=f"{i}-{case['class']}") for i, case in enumerate(_load(OWN_CASES))
    ]


def _dev_params() -> list[Any]:
    if not DEV_SET.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no dev set at {DEV_SET}"))]
    params = []
    for i, case in enumerate(_load(DEV_SET)):
        marks = []
        if i in KNOWN_MISSES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[i]))
        params.append(pytest.param(case, id=f"{i}-{case['provider']}-{case['class']}", marks=marks))
    return params


def _classify(case: dict[str, Any], text: str | None = None) -> Classification:
    return default_classifier().classify(
        case["code"], case["enhanced"] or "", case["text"] if text is None else text
    )


def _bare(case: dict[str, Any]) -> str:
    """The reply text without its code, enhanced code and continuation prefixes."""
    text: str = case["text"]
    if case["code"] is None:
        return text
    enhanced = re.escape(case["enhanced"] or "")
    prefix = (
        rf"(?<!\S){case['code']}[ -]#?(?:{enhanced}\s+)?" if enhanced else rf"^{case['code']}[ -]"
    )
    return re.sub(prefix, "", text).strip()


# ------------------------------------------------------------------ regression data
@pytest.mark.parametrize("case", _own_params())
def test_own_regression_cases(case: dict[str, Any]) -> None:
    assert case.get("source"), "every regression case notes its source"
    result = _classify(case)
    assert result.cls == case["class"], f"rule {result.rule}"
    if "retry_after" in case:
        assert result.retry_after == case["retry_after"]


@pytest.mark.parametrize("case", _dev_params())
def test_development_set(case: dict[str, Any]) -> None:
    result = _classify(case)
    assert result.cls == case["class"], f"rule {result.rule}: {case['text'][:120]}"


def test_known_misses_are_few() -> None:
    assert len(KNOWN_MISSES) <= 5


@pytest.mark.parametrize("case", _own_params() + _dev_params())
def test_bare_text_classifies_the_same(case: dict[str, Any]) -> None:
    assert _classify(case, _bare(case)).cls == _classify(case).cls


def test_every_packaged_rule_names_its_source() -> None:
    assert all(rule.source for rule in default_classifier().rules)


# ------------------------------------------------------------------ text handling
def test_enhanced_code_is_taken_from_the_text_when_not_given() -> None:
    c = default_classifier()
    # no rule wording here: only the enhanced code found in the text decides
    assert c.classify(550, "", "550-5.2.2 <j.doe@example.org> 550 5.2.2 box").cls == "mailbox_full"
    assert c.classify(550, "", "550 sorry (#5.1.1)").rule == "fallback-enhanced-x.1.1"
    # a Yahoo-style "4.16.55.1" is not an RFC 3463 code
    assert c.classify(421, "", "421 deferred - 4.16.55.1").rule == "fallback-4xx"


def test_multiline_reply_joined_the_postfix_way() -> None:
    text = (
        "550-5.7.1 This message does not have authentication information or fails to pass "
        "550-5.7.1 authentication checks. To best protect our users from spam, the "
        "550 5.7.1 message has been blocked. - gsmtp"
    )
    assert default_classifier().classify(550, "5.7.1", text).cls == "auth_failure"
    lines = text.replace(" 550-", "\n550-").replace(" 550 ", "\r\n550 ")
    assert default_classifier().classify(550, "5.7.1", lines).cls == "auth_failure"


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        # a HELO mentioned as the stage of a transient error is not a HELO policy refusal
        (421, "421 4.7.0 Try again later, closing connection. (EHLO) - gsmtp", "temporary_server"),
        (450, "450 4.7.1 <x>: Helo command rejected: Host not found", "policy"),
        # a locked mailbox is a transient lock, not a disabled mailbox
        (450, "450 4.2.0 Mailbox locked, try again later", "temporary_server"),
        # the recipient's size limit is about the message, a mailbox size limit about the box
        (552, "552 5.2.3 Message exceeds the recipient's size limit", "message_too_large"),
        (552, "552 5.2.2 Mailbox size limit exceeded", "mailbox_full"),
        # sender-side problems are policy even with recipient-ish words or codes
        (550, "550 5.1.1 Sender address cannot be verified", "policy"),
        (501, "501 5.1.7 Invalid address", "policy"),
        (450, "450 4.1.8 <j.doe@example.com>: Sender address rejected: Domain not found", "policy"),
        (
            450,
            "450 4.1.2 <j.doe@example.org>: Recipient address rejected: Domain not found",
            "domain_unknown",
        ),
        # our IP blocked for too many invalid recipients is not one unknown mailbox
        (554, "554 Too many invalid recipients", "reputation_block"),
        # a host blocked for past spam vs this message blocked for its content
        (554, "554 Comcast block for spam", "reputation_block"),
        (554, "554 5.7.1 Message blocked due to spam content in the message.", "spam_content"),
        # a queue or submission quota is a rate limit, not a full mailbox
        (450, "450 4.7.3 Organization queue quota exceeded.", "throttled"),
    ],
)
def test_precedence(code: int, text: str, expected: str) -> None:
    assert default_classifier().classify(code, "", text).cls == expected


@pytest.mark.parametrize(
    ("code", "enhanced", "expected", "rule"),
    [
        (250, "", "delivered", "delivered-2xx"),
        (None, "", "network", "fallback-no-reply"),
        (None, "5.1.10", "domain_unknown", "fallback-no-reply-domain"),
        (None, "5.4.4", "domain_unknown", "fallback-no-reply-domain"),
        (550, "5.1.1", "mailbox_unknown", "fallback-enhanced-x.1.1"),
        (452, "4.2.2", "mailbox_full", "fallback-enhanced-x.2.2"),
        (550, "5.2.1", "mailbox_disabled", "fallback-enhanced-5.2.1"),
        (552, "5.3.4", "message_too_large", "fallback-enhanced-x.2.3"),
        (451, "4.3.0", "temporary_server", "fallback-enhanced-4.3"),
        (550, "5.7.1", "policy", "fallback-enhanced-x.7"),
        (451, "", "temporary_server", "fallback-4xx"),
        (554, "", "unknown", "fallback-5xx"),
    ],
)
def test_fallbacks(code: int | None, enhanced: str, expected: str, rule: str) -> None:
    result = default_classifier().classify(code, enhanced, "xyzzy")
    assert (result.cls, result.rule) == (expected, rule)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("451 4.7.1 Greylisted, please try again in 5 minutes", 300.0),
        ("421 4.7.0 Too many connections; retry after 300 seconds", 300.0),
        ("450 4.7.1 Please try again later in 60s", 60.0),
        ("421 Rate limited, try again in 1 hour", 3600.0),
        ("451 4.7.1 Recipient address rejected: Greylisted for 90 secs", 90.0),
        ("421 4.7.0 Try again later, closing connection.", None),
        ("550 5.1.1 User unknown", None),
    ],
)
def test_retry_after(text: str, seconds: float | None) -> None:
    assert retry_after(text) == seconds
    assert default_classifier().classify(int(text[:3]), "", text).retry_after == seconds


def test_result_is_cached() -> None:
    c = Classifier.load()
    first = c.classify(550, "5.1.1", "550 5.1.1 User unknown")
    assert c.classify(550, "5.1.1", "550 5.1.1 User unknown") is first
    assert default_classifier() is default_classifier()


def test_reply_class_values() -> None:
    assert ReplyClass("reputation_block") is ReplyClass.REPUTATION_BLOCK
    assert len(ReplyClass) == 16


# ------------------------------------------------------------------ rule files
def _write(tmp_path: Path, rules: object, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(rules) if not isinstance(rules, str) else rules)
    return path


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            {"name": "r", "class": "bogus", "text": "x"},
            r"rule #0 \('r'\): key 'class': unknown class 'bogus'",
        ),
        (
            {"name": "r", "class": "policy", "text": "(unclosed"},
            r"rule #0 \('r'\): key 'text': bad regular expression",
        ),
        (
            {"name": "r", "class": "policy", "enhanced": "[5"},
            r"key 'enhanced': bad regular expression",
        ),
        ({"name": "r", "class": "policy", "txt": "x"}, r"rule #0 \('r'\): key 'txt': unknown key"),
        ({"class": "policy", "text": "x"}, r"rule #0: key 'name': missing or empty rule name"),
        (
            {"name": "r", "class": "policy", "code": ["6xx"]},
            r"key 'code': '6xx' is not a reply code",
        ),
        ({"name": "r", "class": "policy", "code": [True]}, r"key 'code': True is not a reply code"),
        ({"name": "r", "class": "policy", "text": ["a", 5]}, r"key 'text': expected a regular"),
        ({"name": "r", "class": "policy"}, r"a rule needs a condition"),
        ({"name": "r", "class": "policy", "text": "x", "source": 3}, r"key 'source'"),
    ],
)
def test_rule_validation_names_the_problem(tmp_path: Path, rule: object, message: str) -> None:
    path = _write(tmp_path, [rule])
    with pytest.raises(RuleError, match=message) as info:
        Classifier.load(path)
    assert str(path) in str(info.value)


def test_rule_file_must_be_a_list_with_unique_names(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="expected a list of rules"):
        Classifier.load(_write(tmp_path, {"name": "r"}))
    with pytest.raises(RuleError, match="not valid YAML"):
        Classifier.load(_write(tmp_path, "- name: [unclosed"))
    twice = [{"name": "r", "class": "policy", "text": "a"}] * 2
    with pytest.raises(RuleError, match=r"rule #1 \('r'\): key 'name': duplicate rule name"):
        Classifier.load(_write(tmp_path, twice))


def test_extra_rules_override_the_packaged_ones(tmp_path: Path) -> None:
    extra = _write(
        tmp_path,
        [
            {
                "name": "ours-gmail-quota-is-throttling",
                "class": "throttled",
                "code": ["4xx"],
                "enhanced": r"^4\.2\.2$",
            }
        ],
        "extra.yaml",
    )
    text = "452 4.2.2 The recipient's inbox is out of storage space."
    assert default_classifier().classify(452, "4.2.2", text).cls == "mailbox_full"
    c = Classifier.load(extra=extra)
    assert c.classify(452, "4.2.2", text) == Classification(
        ReplyClass.THROTTLED, "ours-gmail-quota-is-throttling"
    )
    assert c.classify(552, "5.2.2", "552 5.2.2 Mailbox full").cls == "mailbox_full"  # 5xx: packaged
    with pytest.raises(RuleError, match=r"extra\.yaml: rule #0"):
        Classifier.load(
            extra=_write(tmp_path, [{"name": "x", "class": "nope", "text": "a"}], "extra.yaml")
        )


def test_rule_conditions_combine_and_list_patterns_are_alternatives(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {
                "name": "both",
                "class": "throttled",
                "code": [421, "5xx"],
                "text": ["slow down", "Too Fast"],
            },
        ],
    )
    c = Classifier.load(path)
    assert c.classify(421, "", "421 please SLOW DOWN").rule == "both"
    assert c.classify(554, "", "554 too fast").rule == "both"  # "Too Fast" is case-insensitive
    assert c.classify(450, "", "450 too fast").rule == "fallback-4xx"  # code does not match
    assert c.classify(None, "", "too fast").rule == "fallback-no-reply"  # a code rule needs a code
