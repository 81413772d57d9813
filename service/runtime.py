"""What a running worker holds: settings, the stores, the models, the providers, the active ruleset.

The active ruleset is one reference, swapped atomically on reload; a request takes it once at
its start and runs to the end on it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from service import __version__, metrics
from service.config import Settings
from service.decisions import Decisions
from service.engine.ruleset import Ruleset, RulesetError, load_ruleset
from service.gather import Gatherer
from service.ruletests import check_elsewhere, check_ruleset
from service.scoring.model import OnnxModel, load_models
from service.store.decisions import DecisionStore
from service.store.keys import KeyedHash
from service.store.lists import SqliteLists
from service.store.velocity import SqliteVelocity
from service.store.whitelist import SqliteWhitelist
from service.verification.breaker import BreakerPolicy, CircuitBreaker
from service.verification.providers import HttpProvider, ProviderConfig

log = logging.getLogger("service.runtime")
COMPILE_SWITCH_S = 0.0005


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
    store: DecisionStore
    models: dict[str, OnnxModel] = field(default_factory=dict)
    ruleset: Ruleset | None = None
    ruleset_errors: list[str] = field(default_factory=list)
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        settings = self.settings
        keyed = KeyedHash(settings.pii_key)
        self.whitelist = SqliteWhitelist(settings.whitelist_dir, keyed, settings.whitelist_poll_s)
        self.velocity = SqliteVelocity(settings.data_dir / "velocity.sqlite3", keyed)
        self.lists = SqliteLists(settings.data_dir / "lists.sqlite3", keyed)
        self.providers = build_providers(settings)
        self.gatherer = Gatherer(self.providers, self.whitelist, self.velocity, self.lists)
        self.decisions = Decisions(self.gatherer, self.store, self.models, settings.deadline_ms / 1000)

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        """Raises ModelError if a model does not load or does not match its feature spec: a
        worker never starts scoring with the wrong inputs."""
        models = load_models(settings.models_dir)
        store = DecisionStore(settings.database_path, settings.commit_linger_ms / 1000,
                              settings.commit_max_batch)
        return cls(settings, store, models)

    def start(self) -> None:
        self.store.open()
        self.velocity.open()
        self.lists.open()
        metrics.BUILD_INFO.info({"version": __version__})
        for model in self.models.values():
            metrics.MODEL_INFO.labels(model.name, model.version).set(1)
        try:
            self.ruleset = check_ruleset(self.settings.rules_dir, set(self.models))
            self.lists.declare(self.ruleset.list_kinds)
            metrics.RULESET_INFO.info({"version": self.ruleset.version})
            log.info("ruleset loaded", extra={"fields": {"ruleset": self.ruleset.version}})
        except RulesetError as exc:
            self.ruleset_errors = [str(e) for e in exc.errors]
            log.error("ruleset refused; not ready", extra={"fields": {"errors": self.ruleset_errors}})
        metrics.READY.set(1 if self.ready() else 0)

    async def close_providers(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()

    def stop(self) -> None:
        self.gatherer.close()
        self.store.close()
        self.velocity.close()
        self.lists.close()
        self.whitelist.close()
        metrics.READY.set(0)

    def ready(self) -> bool:
        return (self.ruleset is not None and self.store.healthy() and self.velocity.healthy()
                and self.lists.healthy())

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

    async def reload(self, directory: Path | None = None) -> tuple[Ruleset | None, list[str]]:
        """Lint, compile and test a ruleset in another process, then compile it here off the
        event loop; swap it in only if all pass and it is still the version that was tested.

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
            return ruleset, []
