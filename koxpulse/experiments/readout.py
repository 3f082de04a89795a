"""Read one campaign's users from ``ab_users`` (parameterised, read-only) and report on them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from clickhouse_connect.driver.client import Client

from koxpulse.errors import ConfigError, QueryError
from sinks.tables import quote_ident

from .report import USER_COLUMNS, Design, Report, build_report
from .views import EXPOSURES, USERS

_FLAGS = ("multi_variant", "fraud_user", "fraud_device")


def load_users(
    client: Client, database: str, campaign: str, filters: dict[str, str]
) -> dict[str, np.ndarray[Any, Any]]:
    db = quote_ident(database)
    where = ["campaign_id = {campaign:String}"]
    params: dict[str, Any] = {"campaign": campaign}
    for key in ("region", "channel"):
        if key in filters:
            where.append(f"{quote_ident(key)} = {{{key}:String}}")
            params[key] = filters[key]
    cols = ["variant", *_FLAGS, *USER_COLUMNS, "toUnixTimestamp64Milli(first_exposure)"]
    sql = (
        f"SELECT {', '.join(cols)} FROM {db}.{quote_ident(USERS)} "
        f"WHERE {' AND '.join(where)} ORDER BY user_id"
    )
    try:
        result = client.query(sql, parameters=params, settings={"readonly": 1})
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise QueryError(
            f"reading {USERS} failed: {first[0] if first else exc.__class__.__name__}"
        ) from exc
    columns = result.result_columns if result.result_rows else [[] for _ in cols]
    names = ["variant", *_FLAGS, *USER_COLUMNS, "first_exposure_ms"]
    out: dict[str, np.ndarray[Any, Any]] = {}
    for name, values in zip(names, columns, strict=True):
        if name == "variant":
            out[name] = np.asarray(values, dtype=object).astype(str)
        elif name in _FLAGS:
            out[name] = np.asarray(values, dtype=bool)
        elif name == "first_exposure_ms":
            out[name] = np.asarray(values, dtype=np.int64)
        else:
            out[name] = np.asarray(values, dtype=np.float64)
    return out


def known_campaigns(client: Client, database: str) -> list[str]:
    sql = (
        f"SELECT DISTINCT campaign_id FROM {quote_ident(database)}.{quote_ident(EXPOSURES)} "
        "ORDER BY campaign_id"
    )
    return [r[0] for r in client.query(sql, settings={"readonly": 1}).result_rows]


def campaign_report(
    client: Client,
    database: str,
    campaign: str,
    metrics: Sequence[str],
    design: Design,
    filters: dict[str, str],
) -> Report:
    users = load_users(client, database, campaign, filters)
    if len(users["variant"]) == 0:
        known = known_campaigns(client, database)
        segment = "".join(f" in {k} {v}" for k, v in filters.items())
        raise ConfigError(
            f"campaign {campaign} has no exposed users{segment} "
            f"(campaigns with exposures: {', '.join(known) or 'none'})"
        )
    return build_report(campaign, users, metrics, design, filters)
