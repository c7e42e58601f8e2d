"""Generate docs/config.md from the schema, so the reference never drifts from the code."""

from __future__ import annotations

import json
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from mailwarden.config.schema import Listener, Settings


def _default(field: FieldInfo) -> str:
    if field.default is not PydanticUndefined:
        value: Any = field.default
    elif field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        return "(required)"
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, dict) and value and isinstance(next(iter(value.values())), BaseModel):
        return "(see below)"
    return f"`{json.dumps(value, default=str)}`"


def _type_name(ann: Any) -> str:
    if get_origin(ann) is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in get_args(ann))
    text = ann.__name__ if isinstance(ann, type) else str(ann)
    return text.replace("typing.", "").replace("pathlib.", "").replace(" | ", " or ")


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows: list[str] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(_rows(ann, f"{key}."))
            continue
        typ = _type_name(ann)
        desc = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{key}` | {typ} | {_default(field)} | {desc} |")
    return rows


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from `src/mailwarden/config/schema.py` by `mailwarden config docs`;",
        "do not edit.",
        "",
        "The file is `mailwarden.yaml` (`--config PATH`, default `./mailwarden.yaml`, then",
        "`/etc/mailwarden/mailwarden.yaml`). Any key can be overridden from the environment:",
        "`MAILWARDEN_` + the key path in upper case with `__` between levels, the value",
        "parsed as YAML, e.g. `MAILWARDEN_LIMITS__MAX_RECIPIENTS=50` or",
        "`MAILWARDEN_DNS__NAMESERVERS='[\"127.0.0.1:53\"]'`. Relative paths are relative to",
        "the directory of the config file. Unknown keys are errors.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        *_rows(Settings, ""),
        "",
        "## listeners.NAME",
        "",
        "`listeners` maps a name to a listener. The embedded default (`mailwarden init`) defines",
        "mx 2525, submission 2587, submissions 2465 (implicit TLS), imap 2143, imaps 2993 and",
        "http 8025 on 127.0.0.1; `mailwarden init --production` uses 25, 587, 465, 143, 993 and",
        '443 on all addresses (`address: "*"`).',
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        *_rows(Listener, "listeners.NAME."),
        "",
    ]
    return "\n".join(lines)
