"""What a running worker holds: settings, the stores, the models, the providers, the active ruleset.

The active ruleset is one reference, swapped atomically on reload; a request takes it once at
its start and runs to the end on it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from service import __version__, metrics
from service.config import Settings
from service.decisions import Decisions
from service.engine.ruleset import Ruleset, RulesetError, load_ruleset
from service.explanations import Explanations
from service.fleet import FOLLOW_EVERY_S, Fleet
from service.gather import Gatherer
from service.model_versions import ModelVersions
from service.review.callbacks import Callbacks
from service.review.channel import ReviewChannel
from service.ruletests import check_elsewhere, check_ruleset
from service.scoring.model import OnnxModel, load_models
from service.store.backends import Stores, stores
from service.store.keys import KeyedHash
from service.verification.breaker import BreakerPolicy, CircuitBreaker
from service.verification.providers import HttpProvider, ProviderConfig

log = logging.getLogger("service.runtime")
COMPILE_SWITCH_S = 0.0005
WATCH_EVERY_S = 0.5
REVIEW_TICK_S = 1.0


def build_providers(settings: Settings) -> dict[str, HttpProvider]:
    """An HTTP adapter, with its circuit breaker, for each configured provider."""
    credentials = settings.provider_credentials()
    policy = BreakerPolicy(open_s=settings.breaker_open_s, slow_s=settings.breaker_slow_ms / 1000)
    return {name: HttpProvider(ProviderConfig(name, url, credentials.get(name, ""),
                                              *settings.provider_options(name)),
                               CircuitBreaker(name, policy))
            for name, url in settings.provider_urls().items()}


@dataclass
class Runtime:
    settings: Settings
    stores: Stores
    models: dict[str, OnnxModel] = field(default_factory=dict)
    ruleset: Ruleset | None = None
    ruleset_errors: list[str] = field(default_factory=list)
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        settings = self.settings
        self.store = self.stores.decisions
        self.whitelist = self.stores.whitelist
        self.velocity = self.stores.velocity
        self.lists = self.stores.lists
        self.labels = self.stores.labels
        self.review = ReviewChannel(self.stores.reviews, self.store, lambda: self.ruleset, settings.review_lease_s,
                                    callbacks=bool(settings.callback_url))
        self.callbacks: Callbacks | None = None
        if settings.callback_url:
            secret = settings.callback_secret.get_secret_value().encode()
            self.callbacks = Callbacks(self.stores.reviews, settings.callback_url, secret, settings.callback_timeout_s)
            self.review.on_final = self.callbacks.wake.set
        self.providers = build_providers(settings)
        self.fleet: Fleet | None = None
        if self.stores.database is not None:
            from service.store.postgres.rulesets import PublishedRulesets

            self.fleet = Fleet(PublishedRulesets(self.stores.database), settings.data_dir / "rulesets")
        self.fleet_errors: list[str] = []  # why the fleet's published ruleset was refused here
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.model_versions = ModelVersions(self.models, self.stores.models)
        self.explanations = Explanations(self.model_versions, dt.timedelta(days=settings.review_request_days))
        self.gatherer = Gatherer(self.providers, self.whitelist, self.velocity, self.lists)
        self.decisions = Decisions(self.gatherer, self.store, self.models, settings.deadline_ms / 1000)

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        """Raises ModelError if a model does not load or does not match its feature spec: a
        worker never starts scoring with the wrong inputs."""
        models = load_models(settings.models_dir)
        return cls(settings, stores(settings.database_url.get_secret_value(), settings.data_dir,
                                    KeyedHash(settings.pii_key), whitelist_poll_s=settings.whitelist_poll_s,
                                    commit_linger_s=settings.commit_linger_ms / 1000,
                                    commit_max_batch=settings.commit_max_batch), models)

    def start(self) -> None:
        self.store.open()
        self.stores.reviews.open()
        self.labels.open()
        self.stores.models.open()
        try:
            self.model_versions.archive_live()
        except Exception as exc:  # noqa: BLE001 - serving does not need the archive; explaining later does
            log.error("models not archived", extra={"fields": {"error": f"{type(exc).__name__}: {exc}"}})
        self.velocity.open()
        self.lists.open()
        self.whitelist.open()
        self._watcher = threading.Thread(target=self._watch, name="runtime-watch", daemon=True)
        self._watcher.start()
        metrics.BUILD_INFO.info({"version": __version__})
        for model in self.models.values():
            metrics.MODEL_INFO.labels(model.name, model.version).set(1)
        try:
            self.ruleset = check_ruleset(self._first_rules(), set(self.models))
            self.lists.declare(self.ruleset.list_kinds)
            metrics.RULESET_INFO.info({"version": self.ruleset.version})
            log.info("ruleset loaded", extra={"fields": {"ruleset": self.ruleset.version}})
        except RulesetError as exc:
            self.ruleset_errors = [str(e) for e in exc.errors]
            log.error("ruleset refused; not ready", extra={"fields": {"errors": self.ruleset_errors}})
        metrics.READY.set(1 if self.ready() else 0)

    def _first_rules(self) -> Path:
        """The fleet's published ruleset when there is one (and it passes here), else rules_dir."""
        if self.fleet is not None:
            try:
                directory = self.fleet.active_directory()
                if directory is not None:
                    check_ruleset(directory, set(self.models))
                    return directory
            except RulesetError as exc:
                self.fleet_errors = [str(e) for e in exc.errors]
                log.error("the published ruleset was refused; serving rules_dir",
                          extra={"fields": {"errors": self.fleet_errors}})
            except Exception as exc:  # noqa: BLE001 - the database is down: start on rules_dir
                log.error("published ruleset unavailable; serving rules_dir",
                          extra={"fields": {"error": type(exc).__name__}})
        return self.settings.rules_dir

    async def follow_fleet(self) -> None:
        """Serve the fleet's published ruleset (PostgreSQL): look every FOLLOW_EVERY_S, report
        this replica's state, reload when a new version is published, never retry a refused one."""
        assert self.fleet is not None
        while True:
            await asyncio.sleep(FOLLOW_EVERY_S)
            serving = self.ruleset.version if self.ruleset else None
            try:
                published = await asyncio.to_thread(self.fleet.heartbeat, serving, self.fleet_errors)
                if published is None or published == serving or published in self.fleet.refused:
                    continue
                directory = await asyncio.to_thread(self.fleet.active_directory)
                if directory is None:
                    continue
                ruleset, errors = await self.reload(directory, publish=False)
                if ruleset is None:
                    self.fleet.refused[published] = self.fleet_errors = errors
                else:
                    self.fleet_errors = []
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database is down: keep serving, look again
                log.warning("following the fleet's ruleset failed", extra={"fields": {"error": type(exc).__name__}})

    async def run_review(self) -> None:
        """The review clock (lapsed claims, breaches, queue gauges) and the callback dispatcher,
        until cancelled."""
        delivering = asyncio.ensure_future(self.callbacks.run()) if self.callbacks is not None else None
        try:
            while True:
                try:
                    await self.review.tick()
                    if self.callbacks is not None:
                        await self.callbacks.gauges()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a store outage: the next tick tries again
                    log.warning("review clock tick failed", extra={"fields": {"error": type(exc).__name__}})
                await asyncio.sleep(REVIEW_TICK_S)
        finally:
            if delivering is not None:
                delivering.cancel()
                await asyncio.gather(delivering, return_exceptions=True)
                assert self.callbacks is not None
                await self.callbacks.close()

    async def close_providers(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()

    def _watch(self) -> None:
        """Off the event loop: notice a newly activated whitelist version even while no decision
        arrives, so that readiness follows it."""
        while not self._stop.wait(min(self.settings.whitelist_poll_s, WATCH_EVERY_S)):
            try:
                self.whitelist.active()
            except Exception as exc:  # noqa: BLE001 - the database's health says why
                log.debug("whitelist check failed", extra={"fields": {"error": type(exc).__name__}})
            metrics.READY.set(1 if self.ready() else 0)

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        self.gatherer.close()
        self.store.close()
        self.stores.reviews.close()
        self.labels.close()
        self.stores.models.close()
        self.velocity.close()
        self.lists.close()
        self.whitelist.close()
        metrics.READY.set(0)

    def ready(self) -> bool:
        """Rules loaded, stores reachable, and a whitelist version active (without one, every
        decision would refer for want of data)."""
        return (self.ruleset is not None and self.store.healthy() and self.velocity.healthy()
                and self.lists.healthy() and self.whitelist.version is not None)

    async def _compile(self, directory: Path) -> Ruleset:
        """Compile the tested ruleset on a thread, handing the interpreter back to the event loop
        every half millisecond meanwhile (not every 5 ms, Python's default), so that requests
        in flight barely notice."""
        interval = sys.getswitchinterval()
        sys.setswitchinterval(COMPILE_SWITCH_S)
        try:
            return await asyncio.to_thread(load_ruleset, directory, set(self.models))
        finally:
            sys.setswitchinterval(interval)

    async def reload(self, directory: Path | None = None, publish: bool = True,
                     by: str = "reload") -> tuple[Ruleset | None, list[str]]:
        """Lint, compile and test a ruleset in another process, then compile it here off the
        event loop; swap it in only if all pass and it is still the version that was tested.
        On PostgreSQL, ``publish`` also makes it the fleet's ruleset (every replica follows).

        Requests already running keep the ruleset they started with."""
        directory = directory or self.settings.rules_dir
        async with self._reload_lock:
            try:
                tested = await asyncio.to_thread(check_elsewhere, directory, set(self.models))
                ruleset = await self._compile(directory)
                if ruleset.version != tested:
                    raise RulesetError([f"{directory}: the files changed while they were tested; reload again"])
            except RulesetError as exc:
                errors = [str(e) for e in exc.errors]
                metrics.RULE_RELOADS.labels("refused").inc()
                log.warning("reload refused", extra={"fields": {"errors": errors}})
                return None, errors
            metrics.RULE_RELOADS.labels("applied").inc()
            metrics.RULESET_INFO.info({"version": ruleset.version})
            self.lists.declare(ruleset.list_kinds)
            previous, self.ruleset = self.ruleset, ruleset
            self.ruleset_errors = []
            metrics.READY.set(1 if self.ready() else 0)
            log.info("ruleset reloaded", extra={"fields": {
                "ruleset": ruleset.version, "previous": previous.version if previous else None}})
            if publish and self.fleet is not None:
                await asyncio.to_thread(self.fleet.publish, directory, ruleset.version, by)
            return ruleset, []
