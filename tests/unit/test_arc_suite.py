"""The ARC validation suite (arc-draft-validation-tests.yml), run against verify_arc.

Source: ../shared/corpora/arc (see its README.md). Each YAML document holds scenarios
whose ``message`` is validated against the document's ``txt-records`` (DNS name → TXT
value; folded YAML, so the base64 may contain spaces, which key parsers ignore). ``cv`` is
the expected chain validation status: Pass, Fail, None, or empty when an ARC-Seal already
carries cv=fail. RFC 8617 §5.2 step 2 makes that last case "fail", which is what we report.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from mailwarden.auth.arc import verify_arc
from mailwarden.core.headers import read_headers
from mailwarden.dns.resolver import StaticResolver
from shared_data import CORPORA

SUITE = CORPORA / "arc" / "arc-draft-validation-tests.yml"
EXPECTED = {"pass": "pass", "fail": "fail", "none": "none", "": "fail"}

# Cases the implementation does not meet, with the reason. Keep it empty if possible.
XFAIL: dict[str, str] = {}


def _cases() -> Iterator[Any]:
    for doc in yaml.safe_load_all(SUITE.read_text(encoding="utf-8")):
        records = {(n, "TXT"): [str(v).strip()] for n, v in doc.get("txt-records", {}).items()}
        for name, case in (doc.get("tests") or {}).items():
            marks = [pytest.mark.xfail(reason=XFAIL[name], strict=True)] if name in XFAIL else []
            yield pytest.param(records, case, id=name, marks=marks)


@pytest.mark.parametrize(("records", "case"), list(_cases()))
async def test_arc_validation_suite(
    records: dict[tuple[str, str], list[str]], case: dict[str, Any]
) -> None:
    message = (case["message"] or "").encode()
    result = await verify_arc(StaticResolver(records), message)
    want = EXPECTED[str(case["cv"]).strip().lower()]
    assert result.result == want, result.reason
    # The verdict path hands over headers it already parsed: same answer.
    shared = await verify_arc(StaticResolver(records), message, headers=read_headers(message))
    assert shared == result


def test_suite_size() -> None:
    assert len(list(_cases())) > 150
