"""The collaborative engine's serving logic: top-N per user, similar items, real-time events, readiness.

A :class:`Recommender` answers from the *active* model version as recorded in the store, and checks for a new one at
most every ``reload_interval_s`` seconds; it never calls the trainer (gorse's split between the master that trains
and the servers that answer). The user vector of a request comes, in order, from:

1. the user-vector cache under the active version (written by the trainer, or by an earlier event);
2. the model's own user factors, when the user was in the training data (``trained``);
3. a fold-in against the live item factors from the user's stored interactions (``folded_in``; Hu et al. 2008,
   eq. 4 with the item factors held fixed), written back to the cache;
4. the popularity list of the version (``cold_start_popular``) when the user has no usable interaction.

Degraded modes: with the cache down, step 1 is skipped and the vector is folded in from the store (the answer says
so in ``strategy`` and ``degraded``); with the item index down, the query runs on an exact in-process index built
from the model artifact, or fails with :class:`~hybrec.recommend.errors.DependencyUnavailable` (HTTP 503).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np
from sqlalchemy.exc import InterfaceError, OperationalError

from hybrec.config import Settings
from hybrec.data.records import InteractionRecord, interaction_value
from hybrec.recommend.errors import DependencyUnavailable, ItemNotInModel, ModelNotReady, UnknownItems
from hybrec.recommend.state import ServingState, load_serving_state
from hybrec.recommend.telemetry import NullTelemetry, Telemetry, timed
from hybrec.recommend.types import (
    IngestOutcome,
    InteractionEvent,
    LastTraining,
    Readiness,
    Recommendations,
    ScoredItem,
    Strategy,
)
from hybrec.store import model_versions, queries
from hybrec.store.engine import public_error_name, session_scope
from hybrec.vectors import make_user_cache, make_vector_index
from hybrec.vectors.base import (
    CollectionNotFound,
    DeferredIds,
    Exclusion,
    Hit,
    UserVectorCache,
    VectorIndex,
    VectorStoreError,
    VectorStoreUnavailable,
    read_now,
)
from hybrec.vectors.filters import Filter

log = logging.getLogger(__name__)

CACHE_DOWN = "user_cache_unavailable: user vector folded in from the store"
INDEX_DOWN = "item_index_unavailable: served from the exact index built from the model artifact"


class Recommender:
    """Serve recommendations from the active published model version.

    Parameters
    ----------
    settings : Settings
        Store URL, cache/index backends, ``var_dir`` (model artifacts).
    user_cache, item_index : optional
        Backends to use instead of the ones :func:`hybrec.vectors.make_user_cache` / ``make_vector_index`` build
        from ``settings`` (embedded mode shares them with an in-process trainer; tests inject them).
    telemetry : Telemetry, optional
        Receives stage timings, cache outcomes and fallbacks (the API passes its Prometheus metrics).
    reload_interval_s : float
        Check the store for a newly activated version at most this often.
    freeze_gc : bool, default False
        After loading a model version, move every object then alive out of the cyclic garbage collector's sight
        (:func:`gc.freeze`). A loaded model is hundreds of thousands of long-lived objects (ids, metadata: 275k with
        the benchmark's 100k items), which every full collection otherwise walks, stalling every request in flight:
        ``bench/reco_api.py`` measured p99 132 ms on every endpoint, 21 ms with the model frozen. For serving
        processes (``hybrec serve``): cyclic garbage among frozen objects is never collected, which a test process
        building many models should not pay.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        user_cache: UserVectorCache | None = None,
        item_index: VectorIndex | None = None,
        telemetry: Telemetry | None = None,
        reload_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        freeze_gc: bool = False,
    ) -> None:
        self.settings = settings
        self._owns = (user_cache is None, item_index is None)  # close only what this object created
        self.user_cache = user_cache if user_cache is not None else make_user_cache(settings)
        self.item_index = item_index if item_index is not None else make_vector_index(settings)
        self.telemetry: Telemetry = telemetry or NullTelemetry()
        self.reload_interval_s = reload_interval_s
        self._clock = clock
        self._freeze_gc = freeze_gc
        self._state: ServingState | None = None
        self._checked_at = -float("inf")
        self._reload_lock = threading.Lock()
        self._load_error: str | None = None
        #: Duration of the training run that produced the active version (from its model_versions row).
        self.training_duration_s = 0.0

    # --- model version -------------------------------------------------------------------------------------------
    @property
    def model_version(self) -> int | None:
        return None if self._state is None else self._state.version

    def refresh(self, force: bool = False) -> None:
        """Load the active version when it changed (checked at most every ``reload_interval_s`` unless ``force``).

        While one thread checks or loads (loading a large model takes seconds), the others keep answering from the
        loaded version instead of queueing behind it; only with no model loaded yet do they wait.
        """
        now = self._clock()
        if not force and not self._reload_due(now):
            return
        if not self._reload_lock.acquire(blocking=force or self._state is None):
            return
        try:
            if not force and not self._reload_due(now):
                return
            self._checked_at = now
            self._reload()
        finally:
            self._reload_lock.release()

    def _reload_due(self, now: float | None = None) -> bool:
        """Whether :meth:`refresh` would check the store for a new version now (``reload_interval_s`` has passed)."""
        return (self._clock() if now is None else now) - self._checked_at >= self.reload_interval_s

    def _reload(self) -> None:
        with timed(self.telemetry, "reload_check"):
            try:
                with session_scope(self.settings.database_url) as session:
                    row = model_versions.active_model_version(session)
                    active = None if row is None else (row.id, row.artifact_path)
                    if row is not None:
                        self.training_duration_s = float((row.metrics or {}).get("duration_s", 0.0))
            except Exception as exc:  # store down: keep serving what is loaded
                log.warning("could not read the active model version: %s", exc)
                return
        if active is None or (self._state is not None and self._state.version == active[0]):
            return
        try:
            with timed(self.telemetry, "reload"):
                self._state = load_serving_state(self.settings, active[0], active[1], self.item_index)
            self._load_error = None
            if self._freeze_gc:
                self._freeze(self._state)
            log.info("serving model version %d", active[0])
        except Exception as exc:
            self._load_error = f"could not load model version {active[0]}: {exc}"
            log.exception("%s", self._load_error)

    def _freeze(self, state: ServingState) -> None:
        """Move the loaded model out of the cyclic collector's sight (see ``freeze_gc``), its index collection too."""
        try:
            self.item_index.count(state.collection)  # the exact index reads a collection's file on first use
        except VectorStoreError as exc:  # down: nothing of it to freeze; queries fall back meanwhile
            log.debug("item index not loaded before freezing: %s", exc)
        gc.collect()  # the previous version's garbage first, then the survivors out of the collector's sight
        gc.freeze()

    def _current(self) -> ServingState:
        self.refresh()
        if self._state is None:
            raise ModelNotReady(self._load_error or "no trained model is active yet; run `hybrec train`")
        return self._state

    # --- user vectors --------------------------------------------------------------------------------------------
    def _user_vector(
        self,
        state: ServingState,
        user_id: str,
        events: Callable[[], Sequence[queries.UserEvent]],
        degraded: list[str],
    ) -> tuple[np.ndarray | None, Strategy]:
        """The user's vector and how it was obtained; ``events()`` (the user's stored interactions) is called only
        when the vector must be folded in."""
        with timed(self.telemetry, "user_vector"):
            cache_up = True
            try:
                cached = self.user_cache.get(state.version, user_id)
            except VectorStoreUnavailable:
                cache_up, cached = False, None
                self.telemetry.user_vector("cache_down")
                self.telemetry.fallback("user_cache_unavailable")
                degraded.append(CACHE_DOWN)
            if cached is not None:
                self.telemetry.user_vector("cache_hit")
                return cached, "trained" if state.is_trained_vector(user_id, cached) else "folded_in"
            if cache_up:
                self.telemetry.user_vector("cache_miss")
                trained = state.trained_vector(user_id)
                if trained is not None:
                    return trained, "trained"
            vector = self._fold_in(state, events())
            if vector is None:
                self.telemetry.fallback("cold_start")
                return None, "cold_start_popular"
            if cache_up:
                self._cache_set(state.version, user_id, vector, degraded)
            return vector, "folded_in"

    def _fold_in(self, state: ServingState, events: Sequence[queries.UserEvent]) -> np.ndarray | None:
        totals: dict[int, float] = {}
        for event in events:
            row = state.item_pos.get(event.item_id)
            if row is not None:
                totals[row] = totals.get(row, 0.0) + interaction_value(event.kind, event.rating, event.weight)
        if not totals:
            return None
        with timed(self.telemetry, "fold_in"):
            rows = np.fromiter(totals.keys(), dtype=np.int64, count=len(totals))
            values = np.fromiter(totals.values(), dtype=np.float32, count=len(totals))
            return state.fold_in(rows, values)

    def _cache_set(self, version: int, user_id: str, vector: np.ndarray, degraded: list[str]) -> bool:
        try:
            self.user_cache.set(version, user_id, vector)
            return True
        except VectorStoreUnavailable:
            self.telemetry.fallback("user_cache_unavailable")
            if CACHE_DOWN not in degraded:
                degraded.append("user_cache_unavailable: vector not cached, it will be folded in again")
            return False

    # --- queries -------------------------------------------------------------------------------------------------
    def recommend(
        self, user_id: str, n: int, where: Filter | None = None, *, exclude_seen: bool = True
    ) -> Recommendations:
        """The ``n`` best items for ``user_id`` that pass ``where`` (fewer only when fewer match)."""
        state, vector, strategy, seen, degraded = self._prepare(user_id, exclude_seen)
        if vector is None:
            items = self._popular(state, n, where, seen, degraded)
        else:
            items = self._query(state, vector, n, where, seen, degraded)
        return Recommendations(state.version, items, strategy, degraded)

    @property
    def answers_in_process(self) -> bool:
        """Whether a recommendation needs no network round trip: an in-process user cache and item index, and a
        SQLite store (a local file). :meth:`recommend_async` then runs on the caller's event loop."""
        return (
            self.user_cache.in_process
            and self.item_index.in_process
            and self.settings.database_url.startswith("sqlite")
        )

    async def recommend_async(
        self, user_id: str, n: int, where: Filter | None = None, *, exclude_seen: bool = True
    ) -> Recommendations:
        """:meth:`recommend` on an event loop, for a recommender that :attr:`answers_in_process`.

        The user vector takes a fraction of a millisecond here, so it is found on the loop; the index search is
        awaited (the exact index scans the matrix for the requests of a turn of the loop at once, on its scan
        worker, :mod:`hybrec.vectors.scan_worker`), so the loop keeps taking requests meanwhile. Nothing waits on a
        thread pool: run from a pool, each request paid a thread hop and the pool's threads queued for the GIL,
        about a third of a request's CPU. Work that can take long runs in a worker thread instead: a due check for a
        new model version (which may load one), and the cold-start fill of a filtered request.

        The seen items to exclude are read with the batch (:class:`~hybrec.vectors.base.DeferredIds`): the exact
        index reads a whole batch's in one statement, instead of one statement per request. The store is read per
        request only for a user whose vector must be folded in, and then once, for both.
        """
        if self._reload_due():
            await asyncio.to_thread(self.refresh)
        state = self._current()
        degraded: list[str] = []
        read: list[list[queries.UserEvent]] = []

        def events() -> list[queries.UserEvent]:  # the loop reads on every fold-in: it keeps its own connection
            if not read:
                with timed(self.telemetry, "store_read"):
                    read.append(self._stored_events(user_id, keep_connection=True))
            return read[0]

        vector, strategy = self._user_vector(state, user_id, events, degraded)
        if vector is None:
            seen = {e.item_id for e in events()} if exclude_seen else set()
            if where is None or where.is_empty:  # the popularity list as it is: no search
                items = self._popular(state, n, where, seen, degraded)
            else:
                items = await asyncio.to_thread(self._popular, state, n, where, seen, degraded)
        else:
            exclude: Exclusion = set()
            if exclude_seen:
                exclude = {e.item_id for e in read[0]} if read else DeferredIds(user_id, self._seen_items)
            items = await self._query_async(state, vector, n, where, exclude, degraded)
        return Recommendations(state.version, items, strategy, degraded)

    def _prepare(
        self, user_id: str, exclude_seen: bool
    ) -> tuple[ServingState, np.ndarray | None, Strategy, set[str], list[str]]:
        """The live state, the user's vector and how it was obtained, the items to exclude, and the degradations."""
        state = self._current()
        degraded: list[str] = []
        with timed(self.telemetry, "store_read"):
            events = self._stored_events(user_id)
        seen = {e.item_id for e in events} if exclude_seen else set()
        vector, strategy = self._user_vector(state, user_id, lambda: events, degraded)
        return state, vector, strategy, seen, degraded

    def _seen_items(self, user_ids: Sequence[str]) -> list[set[str]]:
        """The items each user interacted with, in one statement (:class:`~hybrec.vectors.base.DeferredIds`'s
        reader: a search thread calls it for a batch of recommendations)."""
        with timed(self.telemetry, "store_read"):
            try:
                return queries.seen_items_by_url(self.settings.database_url, user_ids)
            except (OperationalError, InterfaceError) as exc:
                raise DependencyUnavailable(f"the relational store is unavailable ({public_error_name(exc)})") from exc

    def item_scores(self, user_id: str, item_ids: Sequence[str]) -> tuple[dict[str, float], Strategy]:
        """The user's ALS scores (dot products) for ``item_ids``, for blending into another ranking (chat).

        Items the active model lacks are left out; a user with no usable interactions gets ``{}`` and
        ``cold_start_popular``. The user vector comes from the same sources, in the same order, as :meth:`recommend`.
        """
        state = self._current()
        vector, strategy = self._user_vector(state, user_id, lambda: self._stored_events(user_id), [])
        return ({} if vector is None else self._scores(state, vector, item_ids)), strategy

    def user_vector(self, user_id: str) -> np.ndarray | None:
        """The user's ALS vector (cache → trained → fold-in from the store), or None for a user with no history."""
        return self._user_vector(self._current(), user_id, lambda: self._stored_events(user_id), [])[0]

    def score_items(self, vector: np.ndarray, item_ids: Sequence[str]) -> dict[str, float]:
        """Dot products of ``vector`` with the active model's factors of ``item_ids``; unknown ids are left out."""
        return self._scores(self._current(), vector, item_ids)

    @staticmethod
    def _scores(state: ServingState, vector: np.ndarray, item_ids: Sequence[str]) -> dict[str, float]:
        # One state for the vector and the factors, so a reload between the two cannot mix model versions.
        known = [(item, state.item_pos[item]) for item in dict.fromkeys(item_ids) if item in state.item_pos]
        if not known:
            return {}
        scores = state.item_factors[[row for _, row in known]] @ vector
        return {item: float(score) for (item, _), score in zip(known, scores, strict=True)}

    def _stored_events(self, user_id: str, *, keep_connection: bool = False) -> list[queries.UserEvent]:
        try:
            return queries.user_events_by_url(self.settings.database_url, user_id, keep_connection=keep_connection)
        except (OperationalError, InterfaceError) as exc:
            raise DependencyUnavailable(f"the relational store is unavailable ({public_error_name(exc)})") from exc

    def similar_items(self, item_id: str, n: int, where: Filter | None = None) -> Recommendations:
        """Items whose factors have the largest inner product with ``item_id``'s (the item itself excluded)."""
        state = self._current()
        row = state.item_pos.get(item_id)
        if row is None:
            raise ItemNotInModel([item_id], f" (not in model version {state.version})")
        degraded: list[str] = []
        items = self._query(state, state.item_factors[row], n, where, {item_id}, degraded)
        return Recommendations(state.version, items, "trained", degraded)

    def _query(
        self,
        state: ServingState,
        vector: np.ndarray,
        n: int,
        where: Filter | None,
        exclude: set[str],
        degraded: list[str],
    ) -> list[ScoredItem]:
        with timed(self.telemetry, "index_query"):
            try:
                hits = self.item_index.query(
                    state.collection, vector, n, where=where, exclude_ids=exclude, with_metadata=False
                )[0]
            except (VectorStoreUnavailable, CollectionNotFound) as exc:
                hits = self._fallback_query(state, vector, n, where, exclude, degraded, exc)
        return [state.scored(h.id, h.score) for h in hits]

    async def _query_async(
        self,
        state: ServingState,
        vector: np.ndarray,
        n: int,
        where: Filter | None,
        exclude: Exclusion,
        degraded: list[str],
    ) -> list[ScoredItem]:
        with timed(self.telemetry, "index_query"):
            try:
                found = await self.item_index.query_async(
                    state.collection, vector, n, where=where, exclude_ids=exclude, with_metadata=False
                )
                hits = found[0]
            except (VectorStoreUnavailable, CollectionNotFound) as exc:
                hits = self._fallback_query(state, vector, n, where, exclude, degraded, exc)
        return [state.scored(h.id, h.score) for h in hits]

    def _fallback_query(
        self,
        state: ServingState,
        vector: np.ndarray,
        n: int,
        where: Filter | None,
        exclude: Exclusion,
        degraded: list[str],
        exc: Exception,
    ) -> list[Hit]:
        """The index is down, or this version's collection is already deleted (a newer version is active and this
        process has not reloaded yet): answer exactly from the factors in memory."""
        self.telemetry.fallback("item_index_unavailable")
        fallback = state.fallback_index()
        if fallback is None:
            raise DependencyUnavailable(
                f"the item index is unavailable ({exc}) and no model artifact is loaded to serve from"
            ) from exc
        if INDEX_DOWN not in degraded:
            degraded.append(INDEX_DOWN)
        excluded = read_now(exclude)
        return fallback.query(state.collection, vector, n, where=where, exclude_ids=excluded, with_metadata=False)[0]

    def _popular(
        self, state: ServingState, n: int, where: Filter | None, seen: set[str], degraded: list[str]
    ) -> list[ScoredItem]:
        """Cold start: the most popular items of the version that pass ``where``, most popular first."""
        if where is None or where.is_empty:
            chosen = [i for i in state.popular if i not in seen][:n]
        else:
            # Let the index apply the filter (one code path for filtering), restricted to the popular items; rank
            # its matches by popularity. Items beyond the popularity list fill in by the mean user vector.
            allow = Filter(
                category=where.category,
                brand=where.brand,
                min_price=where.min_price,
                max_price=where.max_price,
                min_rating=where.min_rating,
                ids=set(state.popular) if where.ids is None else where.ids & set(state.popular),
            )
            hits = self._query(state, state.mean_user_vector, len(state.popular), allow, seen, degraded)
            rank = state.popularity_rank
            chosen = sorted((h.item_id for h in hits), key=lambda i: rank[i])[:n]
            if len(chosen) < n:
                more = self._query(state, state.mean_user_vector, n, where, seen | set(chosen), degraded)
                chosen += [h.item_id for h in more][: n - len(chosen)]
        return [state.scored(i, state.popularity_score(i)) for i in chosen]

    # --- events --------------------------------------------------------------------------------------------------
    def record_interactions(self, events: Sequence[InteractionEvent]) -> IngestOutcome:
        """Store ``events`` durably in one transaction (all or nothing), then refresh each user's cached vector.

        Raises :class:`UnknownItems` (nothing stored) when any event names an item absent from the catalog.
        """
        now = datetime.now(UTC)
        with timed(self.telemetry, "store_write"):
            try:
                with session_scope(self.settings.database_url) as session:
                    new = queries.insert_interactions(
                        session,
                        [
                            InteractionRecord(
                                user_id=e.user_id,
                                item_id=e.item_id,
                                kind=e.kind,
                                ts=e.ts or now,
                                rating=e.rating,
                                weight=e.weight if e.weight is not None else interaction_value(e.kind, None, None),
                                idempotency_key=e.idempotency_key,
                            )
                            for e in events
                        ],
                    )
            except queries.UnknownItemsError as exc:
                raise UnknownItems(exc.item_ids, " in the interactions (nothing was stored)") from exc
            except (OperationalError, InterfaceError) as exc:
                raise DependencyUnavailable(
                    f"the relational store is unavailable, nothing was stored ({public_error_name(exc)})"
                ) from exc
        stored, duplicates = len(new), len(events) - len(new)
        users = list(dict.fromkeys(e.user_id for e in events))
        degraded: list[str] = []
        strategies: dict[str, Strategy | None] = dict.fromkeys(users)
        state = self._state_or_none()
        if state is not None:
            for user_id in users:
                strategies[user_id] = self._refold(state, user_id, degraded)
        return IngestOutcome(stored, duplicates, strategies, None if state is None else state.version, degraded)

    def _state_or_none(self) -> ServingState | None:
        self.refresh()
        return self._state

    def _refold(self, state: ServingState, user_id: str, degraded: list[str]) -> Strategy | None:
        events = queries.user_events_by_url(self.settings.database_url, user_id)
        vector = self._fold_in(state, events)
        if vector is None:
            return None
        if not self._cache_set(state.version, user_id, vector, degraded):
            return None
        return "folded_in"

    # --- health --------------------------------------------------------------------------------------------------
    def readiness(self) -> Readiness:
        """Model loaded, stores reachable, and the outcome of the latest training."""
        checks: dict[str, tuple[bool, str | None]] = {}
        last: LastTraining | None = None
        try:
            with session_scope(self.settings.database_url) as session:
                row = next((r for r in model_versions.list_model_versions(session) if r.status != "training"), None)
                if row is not None:
                    last = LastTraining(row.id, row.status, row.created_at, row.error)
            checks["store"] = (True, None)
        except Exception as exc:
            checks["store"] = (False, f"unavailable ({public_error_name(exc)})")
        self.refresh(force=checks["store"][0] and self._state is None)
        state = self._state
        checks["model"] = (state is not None, None if state is not None else self._load_error or "no active model")
        try:
            self.user_cache.ping()
            checks["user_cache"] = (True, None)
        except VectorStoreUnavailable as exc:
            # Degraded, not down: vectors are folded in from the store.
            checks["user_cache"] = (False, f"unavailable, folding in from the store: {exc}")
        try:
            if state is not None:
                self.item_index.count(state.collection)
            else:
                self.item_index.list_collections()
            checks["item_index"] = (True, None)
        except VectorStoreUnavailable as exc:
            fallback = state is not None and state.fallback_index() is not None
            checks["item_index"] = (
                False,
                f"unavailable{', serving from the exact fallback' if fallback else ''}: {exc}",
            )
        ready = checks["store"][0] and checks["model"][0] and (checks["item_index"][0] or state is not None)
        return Readiness(ready, None if state is None else state.version, checks, last)

    def close(self) -> None:
        """Release the backends this recommender created (injected ones belong to the caller)."""
        if self._owns[0]:
            self.user_cache.close()
        if self._owns[1]:
            self.item_index.close()
