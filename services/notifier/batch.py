"""One consumed batch of the notifier: what it knows, loaded once, written back once.

``before_batch`` (:meth:`NotifierBatch.load`) creates the rows of loans the batch will write
and have no row yet, locks every loan it will write (in id order, one statement), reads the
loans it only reads and the borrowers it may contact. Handlers then change these in memory
exactly as their single-row statements used to, and queue contact requests with the loan and
borrower as they are at that event; ``after_batch`` (:meth:`NotifierBatch.finish`) writes the
changed loans and borrowers with one statement each and decides the requests together
(:class:`services.notifier.contacts.ContactBatch`).

Locking every written loan, new or old, keeps two notifier instances that see one loan on
different topics (a stage change here, a flag there) from overwriting each other's columns:
the second waits for the first to commit and reads its result.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier import store
from services.notifier.contacts import ContactBatch
from services.notifier.domain import BorrowerProfile, ContactPolicy, ContactRequest
from services.notifier.store import BorrowerRow, LoanState
from shared.context import BatchContext
from shared.events import Event

# event types whose handler inserts the loan's row when it is missing
CREATES_LOAN = frozenset({"loan.opened", "loan.closed", "case.flag.raised", "stage.changed",
                          "case.assigned"})
# ... and those that only update an existing row
UPDATES_LOAN = frozenset({"case.flag.cleared"})


class NotifierBatch:
    def __init__(self, loans: dict[str, LoanState], locked: set[str], created: set[str],
                 profiles: dict[str, BorrowerProfile]) -> None:
        self._loans = loans  # a loan without a row is absent (the created rows too, at first)
        self._locked = locked
        self._created = created
        # the rows borrower.updated put in this batch (the only ones written back)
        self._borrowers: dict[str, BorrowerRow] = {}
        self._loaded_borrowers: set[str] = set(profiles)
        self._dirty_loans: set[str] = set()
        self._dirty_borrowers: set[str] = set()
        # what decisions read of each borrower: read as such for the stored ones, built once
        # from a row put in this batch (dropped when a borrower.updated replaces the row)
        self._profiles = profiles
        self.contacts = ContactBatch()
        self.policy: ContactPolicy | None = None  # in force when the batch was loaded

    @classmethod
    async def load(cls, conn: AsyncConnection, events: Iterable[Event]) -> NotifierBatch:
        """Lock and read what the batch's events need, with at most three queries."""
        writes: set[str] = set()
        creates: set[str] = set()
        reads: set[str] = set()
        borrower_ids: set[str] = set()
        for event in events:
            # the model's fields (event data forbids extras, so that is all of it): a getattr
            # with a default costs an AttributeError raised by pydantic when the type has no
            # such field
            fields = event.data.__dict__
            loan_id = fields.get("loan_id")
            borrower_id = fields.get("borrower_id")
            if isinstance(borrower_id, str):
                borrower_ids.add(borrower_id)
            if not isinstance(loan_id, str):
                continue
            if event.type in CREATES_LOAN:
                creates.add(loan_id)
                writes.add(loan_id)
            elif event.type in UPDATES_LOAN:
                writes.add(loan_id)
            else:
                reads.add(loan_id)
        created = await store.create_loans(conn, creates)
        loans = await store.load_loans(conn, writes, lock=True)
        for loan_id in created:
            loans.pop(loan_id, None)  # inserted just now: to the handlers it does not exist yet
        borrower_ids.update(s.borrower_id for s in loans.values() if s.borrower_id)
        # the loans only read, every borrower (those of the read loans too) and the policy:
        # one query
        state = await store.load_batch_state(conn, reads - writes, borrower_ids)
        loans.update(state.loans)
        borrower_ids.update(s.borrower_id for s in state.loans.values() if s.borrower_id)
        batch = cls(loans, writes, created, state.profiles)
        batch.policy = state.policy
        batch._loaded_borrowers |= borrower_ids
        return batch

    # -- loans and borrowers ---------------------------------------------------------------

    def loan(self, loan_id: str) -> LoanState | None:
        return self._loans.get(loan_id)

    def put_loan(self, loan: LoanState) -> None:
        if loan.loan_id not in self._locked:
            raise RuntimeError(f"loan {loan.loan_id} was not locked for this batch")
        self._loans[loan.loan_id] = loan
        self._dirty_loans.add(loan.loan_id)

    def put_borrower(self, borrower: BorrowerRow) -> None:
        self._borrowers[borrower.borrower_id] = borrower
        self._profiles.pop(borrower.borrower_id, None)
        self._loaded_borrowers.add(borrower.borrower_id)
        self._dirty_borrowers.add(borrower.borrower_id)

    async def borrower(self, conn: AsyncConnection, borrower_id: str) -> BorrowerProfile | None:
        await self.ensure_borrowers(conn, [borrower_id])
        return self._profile(borrower_id)

    def _profile(self, borrower_id: str) -> BorrowerProfile | None:
        profile = self._profiles.get(borrower_id)
        if profile is None:
            found = self._borrowers.get(borrower_id)
            if found is None:
                return None
            profile = self._profiles[borrower_id] = found.profile
        return profile

    async def ensure_borrowers(self, conn: AsyncConnection, ids: Iterable[str]) -> None:
        """Read the borrowers not read yet (one query, none when all are known)."""
        missing = set(ids) - self._loaded_borrowers
        if missing:
            self._profiles.update(await store.load_profiles(conn, missing))
            self._loaded_borrowers |= missing

    async def flush(self, conn: AsyncConnection, *, final: bool = False) -> None:
        """Write the changed loans and borrowers (before SQL that reads them, and at the end)."""
        await store.save_loans(conn, [self._loans[i] for i in self._dirty_loans])
        await store.save_borrowers(conn, [self._borrowers[i]
                                          for i in sorted(self._dirty_borrowers)])
        self._created -= self._dirty_loans  # written: real rows now
        if final:
            # a row inserted for a handler that then left it alone would not have existed
            await store.delete_loans(conn, self._created)
            self._created.clear()
        self._dirty_loans.clear()
        self._dirty_borrowers.clear()

    # -- contacts ----------------------------------------------------------------------------

    async def request(self, conn: AsyncConnection, requests: list[ContactRequest],
                      now: datetime, policy: ContactPolicy, loan: LoanState | None) -> None:
        """Queue requests, to be decided with the loan and borrowers as they are now."""
        if not requests:
            return
        loaded = self._loaded_borrowers
        if any(r.borrower_id not in loaded for r in requests):
            await self.ensure_borrowers(conn, {r.borrower_id for r in requests})
        for req in requests:
            self.contacts.add((req,), now, policy, loan, self._profile(req.borrower_id))

    async def finish(self, ctx: BatchContext) -> None:
        await self.flush(ctx.conn, final=True)
        await self.contacts.decide_all(ctx)
