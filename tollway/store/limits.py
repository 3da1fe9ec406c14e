"""Budgets, rate limits and the spend of budget accounts.

Nothing here is on the request path: the gateway loads budgets and limits into memory at
start and on every reconcile (``auth.reconcile_interval``), and writes spend back every few
seconds and at shutdown (limits/book.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tollway.store.columns import utcnow
from tollway.store.errors import InvalidRecord, RecordNotFound
from tollway.store.models import BudgetRow, KeyRow, RateLimitRow, SpendRow, TeamRow, UserRow
from tollway.store.records import (
    BUDGET_PERIODS,
    BUDGET_POLICIES,
    BUDGET_SCOPES,
    LIMIT_SCOPES,
    BudgetPeriod,
    BudgetPolicy,
    BudgetRecord,
    BudgetScope,
    LimitScope,
    RateLimitRecord,
    SpendTally,
)
from tollway.store.transaction import Sessions, dialect_insert, require_one_of, transaction


def _merged(row: SpendRow, tally: SpendTally) -> SpendTally:
    """``tally`` merged into what ``row`` holds. A row from before revision 0011 has only a
    total, which may include spend of an epoch Redis still holds (``tally`` has that epoch's
    part too): the larger of the two totals, once, as rows were merged before."""
    if row.tally is not None:
        return SpendTally.from_document(row.tally).merge(tally)
    short = row.spent_micros - tally.total
    return tally if short <= 0 else SpendTally(tally.base + short, tally.epochs)


def budget_record(row: BudgetRow) -> BudgetRecord:
    """The record for a ``budgets`` row."""
    return BudgetRecord(
        scope=row.scope,  # type: ignore[arg-type]  # CHECK constraint keeps it one of them
        scope_id=row.scope_id,
        period=row.period,  # type: ignore[arg-type]
        limit_micros=row.limit_micros,
        policy=row.policy,  # type: ignore[arg-type]
        soft_ratio=row.soft_ratio,
        downgrade=dict(row.downgrade),
        updated_at=row.updated_at,
    )


def limit_record(row: RateLimitRow) -> RateLimitRecord:
    """The record for a ``rate_limits`` row."""
    return RateLimitRecord(
        scope=row.scope,  # type: ignore[arg-type]
        scope_id=row.scope_id,
        tpm=row.tpm,
        rpm=row.rpm,
        max_concurrent=row.max_concurrent,
        updated_at=row.updated_at,
    )


_TARGETS: Mapping[str, type[KeyRow | UserRow | TeamRow]] = {
    "key": KeyRow,
    "user": UserRow,
    "team": TeamRow,
}
"""The scopes whose id names a record of the store. The others are names the store does not
keep: an organisation (a team's ``organization``, or ``*``), a model group, a deployment id
(the config's, which a reload may bring)."""


async def _require_target(session: AsyncSession, scope: str, scope_id: str) -> None:
    """``RecordNotFound`` naming ``scope_id`` unless the key, user or team it names exists: a
    budget or limit set on a mistyped id would silently apply to no one."""
    table = _TARGETS.get(scope)
    if table is None:
        return
    # A shared lock (PostgreSQL): a delete of the team waits until this commits.
    if await session.get(table, scope_id, with_for_update={"key_share": True}) is None:
        raise RecordNotFound(f"no {scope} with id {scope_id!r}")


class LimitRepository:
    """Sets, reads and removes budgets and rate limits; keeps budget spend."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def put_budget(
        self,
        scope: BudgetScope,
        scope_id: str,
        period: BudgetPeriod,
        limit_micros: int,
        *,
        policy: BudgetPolicy = "reject",
        soft_ratio: float | None = None,
        downgrade: Mapping[str, str] | None = None,
    ) -> BudgetRecord:
        """Create or replace the budget of ``scope``/``scope_id`` for ``period``; raises
        ``RecordNotFound`` when ``scope_id`` names no key, user or team of its scope."""
        require_one_of(scope, BUDGET_SCOPES, "budget scope")
        require_one_of(period, BUDGET_PERIODS, "budget period")
        require_one_of(policy, BUDGET_POLICIES, "budget policy")
        if limit_micros < 0:
            raise InvalidRecord("a budget's limit cannot be negative")
        if soft_ratio is not None and not 0 < soft_ratio <= 1:
            raise InvalidRecord("soft_ratio must be in (0, 1]")
        values = {
            "limit_micros": limit_micros,
            "policy": policy,
            "soft_ratio": soft_ratio,
            "downgrade": dict(downgrade or {}),
            "updated_at": utcnow(),
        }
        async with transaction(self._sessions, "the budget changed concurrently") as session:
            await _require_target(session, scope, scope_id)
            # One statement: two puts of a new budget at once are a create and a replace.
            insert = dialect_insert(session)(BudgetRow).values(
                scope=scope, scope_id=scope_id, period=period, **values
            )
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=[BudgetRow.scope, BudgetRow.scope_id, BudgetRow.period],
                    set_={name: insert.excluded[name] for name in values},
                )
            )
            row = await session.get(BudgetRow, (scope, scope_id, period), populate_existing=True)
            assert row is not None  # written just above, in this transaction
            return budget_record(row)

    async def budgets(
        self, *, scope: str | None = None, scope_id: str | None = None
    ) -> list[BudgetRecord]:
        """Budgets, all or of one scope (and id)."""
        query = select(BudgetRow).order_by(BudgetRow.scope, BudgetRow.scope_id, BudgetRow.period)
        if scope is not None:
            query = query.where(BudgetRow.scope == scope)
        if scope_id is not None:
            query = query.where(BudgetRow.scope_id == scope_id)
        async with self._sessions() as session:
            return [budget_record(row) for row in await session.scalars(query)]

    async def delete_budget(self, scope: str, scope_id: str, period: str) -> None:
        """Remove a budget; raises ``RecordNotFound``. Its spend history stays."""
        async with transaction(self._sessions, "the budget changed concurrently") as session:
            row = await session.get(BudgetRow, (scope, scope_id, period), with_for_update=True)
            if row is None:
                raise RecordNotFound(f"no {period} budget for {scope} {scope_id!r}")
            await session.delete(row)

    async def put_limit(
        self,
        scope: LimitScope,
        scope_id: str,
        *,
        tpm: int | None = None,
        rpm: int | None = None,
        max_concurrent: int | None = None,
    ) -> RateLimitRecord:
        """Create or replace the rate limits of ``scope``/``scope_id``; raises
        ``RecordNotFound`` when ``scope_id`` names no key, user or team of its scope."""
        require_one_of(scope, LIMIT_SCOPES, "limit scope")
        for name, value in (("tpm", tpm), ("rpm", rpm), ("max_concurrent", max_concurrent)):
            if value is not None and value <= 0:
                raise InvalidRecord(f"{name} must be positive")
        values = {"tpm": tpm, "rpm": rpm, "max_concurrent": max_concurrent, "updated_at": utcnow()}
        async with transaction(self._sessions, "the limit changed concurrently") as session:
            await _require_target(session, scope, scope_id)
            insert = dialect_insert(session)(RateLimitRow).values(
                scope=scope, scope_id=scope_id, **values
            )
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=[RateLimitRow.scope, RateLimitRow.scope_id],
                    set_={name: insert.excluded[name] for name in values},
                )
            )
            row = await session.get(RateLimitRow, (scope, scope_id), populate_existing=True)
            assert row is not None  # written just above, in this transaction
            return limit_record(row)

    async def limits(self, *, scope: str | None = None) -> list[RateLimitRecord]:
        """Rate limits, all or of one scope."""
        query = select(RateLimitRow).order_by(RateLimitRow.scope, RateLimitRow.scope_id)
        if scope is not None:
            query = query.where(RateLimitRow.scope == scope)
        async with self._sessions() as session:
            return [limit_record(row) for row in await session.scalars(query)]

    async def delete_limit(self, scope: str, scope_id: str) -> None:
        """Remove a scope's rate limits; raises ``RecordNotFound``."""
        async with transaction(self._sessions, "the limit changed concurrently") as session:
            row = await session.get(RateLimitRow, (scope, scope_id), with_for_update=True)
            if row is None:
                raise RecordNotFound(f"no rate limits for {scope} {scope_id!r}")
            await session.delete(row)

    async def spend(self, accounts: list[str] | None = None) -> dict[str, int]:
        """Persisted spend (micro-dollars) of ``accounts`` (all when ``None``)."""
        query = select(SpendRow.account, SpendRow.spent_micros)
        if accounts is not None:
            query = query.where(SpendRow.account.in_(accounts))
        async with self._sessions() as session:
            return {account: spent for account, spent in (await session.execute(query)).all()}

    async def tallies(self, accounts: list[str]) -> dict[str, SpendTally]:
        """Persisted spend of ``accounts`` per epoch, to seed the Redis limiter with; a row
        from before revision 0011 is all spend from before any epoch."""
        query = select(SpendRow.account, SpendRow.spent_micros, SpendRow.tally).where(
            SpendRow.account.in_(accounts)
        )
        async with self._sessions() as session:
            return {
                account: SpendTally(spent) if tally is None else SpendTally.from_document(tally)
                for account, spent, tally in (await session.execute(query)).all()
            }

    async def tallies_under(self, prefix: str) -> dict[str, SpendTally]:
        """Persisted spend of every account whose name starts with ``prefix`` (e.g. every
        ``day`` account of one team: ``team:t1:day:``), as ``tallies`` gives it."""
        query = select(SpendRow.account, SpendRow.spent_micros, SpendRow.tally).where(
            SpendRow.account.startswith(prefix, autoescape=True)
        )
        async with self._sessions() as session:
            return {
                account: SpendTally(spent) if tally is None else SpendTally.from_document(tally)
                for account, spent, tally in (await session.execute(query)).all()
            }

    async def record_spend(self, tallies: Mapping[str, SpendTally]) -> None:
        """Merge accounts' spend into the store, the larger of each part of their tallies:
        replicas write what each knows, and a stale or partial writer must not undo what
        another wrote, nor add what both knew twice. ``spent_micros`` becomes the total."""
        if not tallies:
            return
        now = utcnow()
        names = sorted(tallies)  # rows locked in one order: two writers cannot deadlock
        locked = (
            select(SpendRow)
            .where(SpendRow.account.in_(names))
            .order_by(SpendRow.account)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        async with transaction(self._sessions, "spend changed concurrently") as session:
            rows = {row.account: row for row in await session.scalars(locked)}
            missing = [name for name in names if name not in rows]
            if missing:
                values = [
                    {
                        "account": name,
                        "spent_micros": tallies[name].total,
                        "tally": tallies[name].document(),
                        "updated_at": now,
                    }
                    for name in missing
                ]
                insert = dialect_insert(session)(SpendRow).values(values)
                await session.execute(insert.on_conflict_do_nothing(index_elements=["account"]))
                # Inserted here (merged below with itself: no change), or by another writer
                # since the read (PostgreSQL): merged into theirs.
                rows.update(
                    (row.account, row)
                    for row in await session.scalars(locked.where(SpendRow.account.in_(missing)))
                )
            for name in names:
                row = rows[name]
                merged = _merged(row, tallies[name])
                row.tally = merged.document()
                row.spent_micros = max(row.spent_micros, merged.total)
                row.updated_at = now

    async def forget_spend(self, accounts: list[str]) -> None:
        """Delete the spend of ``accounts`` (a reset by an admin)."""
        async with transaction(self._sessions, "spend changed concurrently") as session:
            await session.execute(delete(SpendRow).where(SpendRow.account.in_(accounts)))


async def remove_scope(session: AsyncSession, scope: str, scope_id: str) -> list[str]:
    """Delete the budgets and rate limit of one scope (a team being deleted) in ``session``'s
    transaction; what was removed, as ``budget:<scope>:<id>:<period>`` and
    ``limit:<scope>:<id>``. Spend history stays."""
    budgets = await session.execute(
        delete(BudgetRow)
        .where(BudgetRow.scope == scope, BudgetRow.scope_id == scope_id)
        .returning(BudgetRow.period)
    )
    limits = await session.execute(
        delete(RateLimitRow)
        .where(RateLimitRow.scope == scope, RateLimitRow.scope_id == scope_id)
        .returning(RateLimitRow.scope_id)
    )
    removed = [f"budget:{scope}:{scope_id}:{period}" for period in sorted(budgets.scalars())]
    return removed + [f"limit:{scope}:{scope_id}" for _ in limits.scalars()]
