"""Experiment views over ``events FINAL``: what A/B readers and ``koxpulse ab report`` read.

Why plain views and not materialized views: rows of ``events`` are written again on
every replay or restart and only ``FINAL`` collapses them, so an insert-triggered
materialized view would count a replayed event twice. A view over ``events FINAL``
is exact however often a row was written, at the price of computing on read (a
campaign's readout reads its events once).

Exposure rule: a user enters campaign C at their first scan of a code of C (the
earliest ``ts``, ties broken by ``event_id``); the variant, region and channel of
that scan are the user's. Every later scan, redemption and order of C by the user
counts towards the user's metrics; everything the user did before it (in any
campaign) is the pre-period that CUPED uses. A user whose events of C carry more
than one variant is flagged ``multi_variant`` and left out of the readout.
"""

from __future__ import annotations

from sinks.tables import quote_ident

EXPOSURES = "ab_exposures"
USERS = "ab_users"
DAILY = "ab_daily"
VIEW_NAMES = (EXPOSURES, USERS, DAILY)


def _exposures(db: str) -> str:
    # Filters sit in an inner query on purpose: ClickHouse lets a SELECT alias shadow a
    # column of the same name in WHERE, so `variant IS NOT NULL` next to
    # `argMin(...) AS variant` would mean the aggregate.
    return f"""
SELECT
    cid AS campaign_id,
    uid AS user_id,
    argMin(v, (ts, event_id)) AS variant,
    min(ts) AS first_exposure,
    argMin(region, (ts, event_id)) AS region,
    argMin(channel, (ts, event_id)) AS channel
FROM (
    SELECT assumeNotNull(campaign_id) AS cid, assumeNotNull(user_id) AS uid,
           assumeNotNull(variant) AS v, ts, event_id, region, channel
    FROM (
        SELECT * FROM {db}.`events` FINAL
        WHERE type = 'scan' AND campaign_id IS NOT NULL AND campaign_id != ''
          AND variant IS NOT NULL AND variant != '' AND user_id IS NOT NULL
    )
)
GROUP BY cid, uid"""


def _users(db: str) -> str:
    post = "a.campaign_id = x.campaign_id AND a.ts >= x.first_exposure"
    pre = "a.ts < x.first_exposure"
    return f"""
SELECT
    x.campaign_id AS campaign_id,
    x.user_id AS user_id,
    x.variant AS variant,
    x.first_exposure AS first_exposure,
    toDate(x.first_exposure) AS exposure_day,
    x.region AS region,
    x.channel AS channel,
    uniqExactIf(a.variant, a.campaign_id = x.campaign_id AND a.variant != '') AS variants_seen,
    variants_seen > 1 AS multi_variant,
    countIf(a.type = 'scan' AND {post}) AS scans,
    countIf(a.type = 'redemption' AND {post}) AS redemptions,
    countIf(a.type = 'order' AND {post}) AS orders,
    round(sumIf(a.amount, a.type = 'order' AND {post}), 2) AS revenue,
    orders > 0 AS converted,
    max(if({post}, a.ts, x.first_exposure)) AS last_activity,
    countIf(a.type = 'scan' AND {pre}) AS pre_scans,
    countIf(a.type = 'redemption' AND {pre}) AS pre_redemptions,
    countIf(a.type = 'order' AND {pre}) AS pre_orders,
    round(sumIf(a.amount, a.type = 'order' AND {pre}), 2) AS pre_revenue,
    x.user_id IN (
        SELECT entity_id FROM {db}.`alerts` FINAL WHERE entity_type = 'user'
    ) AS fraud_user,
    x.user_id IN (
        SELECT assumeNotNull(user_id) FROM {db}.`events` FINAL
        WHERE user_id IS NOT NULL AND device_id IN (
            SELECT entity_id FROM {db}.`alerts` FINAL WHERE entity_type = 'device'
        )
    ) AS fraud_device
FROM {db}.{quote_ident(EXPOSURES)} AS x
INNER JOIN (
    SELECT
        type,
        ts,
        assumeNotNull(user_id) AS user_id,
        ifNull(campaign_id, '') AS campaign_id,
        ifNull(variant, '') AS variant,
        ifNull(amount, 0) AS amount
    FROM (
        SELECT type, ts, user_id, campaign_id, variant, amount FROM {db}.`events` FINAL
        WHERE user_id IS NOT NULL AND type IN ('scan', 'redemption', 'order')
    )
) AS a ON a.user_id = x.user_id
GROUP BY x.campaign_id, x.user_id, x.variant, x.first_exposure, x.region, x.channel"""


def _daily(db: str) -> str:
    return f"""
SELECT
    e.campaign_id AS campaign_id,
    e.variant AS variant,
    e.region AS region,
    e.channel AS channel,
    e.day AS day,
    ifNull(n.new_users, 0) AS new_users,
    e.exposed_users AS exposed_users,
    e.scans AS scans,
    e.redemptions AS redemptions,
    e.orders AS orders,
    e.revenue AS revenue,
    e.buyers AS buyers,
    if(e.scans > 0, e.redemptions / e.scans, NULL) AS redemption_rate
FROM (
    SELECT
        assumeNotNull(cid) AS campaign_id,
        assumeNotNull(v) AS variant,
        region,
        channel,
        toDate(ts) AS day,
        uniqExactIf(user_id, type = 'scan') AS exposed_users,
        countIf(type = 'scan') AS scans,
        countIf(type = 'redemption') AS redemptions,
        countIf(type = 'order') AS orders,
        round(sumIf(ifNull(amount, 0), type = 'order'), 2) AS revenue,
        uniqExactIf(user_id, type = 'order') AS buyers
    FROM (
        SELECT campaign_id AS cid, variant AS v, region, channel, ts, type, user_id, amount
        FROM {db}.`events` FINAL
        WHERE campaign_id IS NOT NULL AND campaign_id != '' AND variant IS NOT NULL
          AND variant != '' AND type IN ('scan', 'redemption', 'order')
    )
    GROUP BY campaign_id, variant, region, channel, day
) AS e
LEFT JOIN (
    SELECT campaign_id, variant, region, channel, toDate(first_exposure) AS day,
           count() AS new_users
    FROM {db}.{quote_ident(EXPOSURES)}
    GROUP BY campaign_id, variant, region, channel, day
) AS n ON n.campaign_id = e.campaign_id AND n.variant = e.variant AND n.region = e.region
      AND n.channel = e.channel AND n.day = e.day"""


def create_view_statements(database: str) -> list[str]:
    """``CREATE OR REPLACE VIEW`` for each view, dependencies first (idempotent, and a
    changed definition replaces the old one)."""
    db = quote_ident(database)
    bodies = ((EXPOSURES, _exposures(db)), (USERS, _users(db)), (DAILY, _daily(db)))
    return [f"CREATE OR REPLACE VIEW {db}.{quote_ident(name)} AS{body}" for name, body in bodies]
