"""The per-process runtime: settings, the loaded config (reloaded when its files change), the Redis
connection and the connectors, built once and shared by every job the process runs.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

import redis

from hub import jobs
from hub.config import loader
from hub.config.loader import Config
from hub.errors import ConfigError
from hub.settings import Settings

log = logging.getLogger("hub.runtime")

_CONNECTOR_MODULES = {
    "airtable": "connectors.airtable",
    "hubspot": "connectors.hubspot",
    "firestore": "connectors.firestore",
    "mailchimp": "connectors.mailchimp",
}


def _config_stamp(root: Path) -> tuple[tuple[str, float, int], ...]:
    paths = [root / loader.RULES_FILE, *sorted((root / loader.MAPPINGS_DIR).glob("*.y*ml"))]
    out = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((str(p), st.st_mtime, st.st_size))
    return tuple(out)


class Runtime:
    """Everything a job needs, built lazily and reused."""

    _current: Runtime | None = None
    _lock = threading.Lock()

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        config_dir: Path | None = None,
        conn: redis.Redis | None = None,
        reload_interval: float = 2.0,
    ) -> None:
        self.settings = settings or Settings()
        self.config_dir = Path(config_dir) if config_dir else self.settings.config_dir
        self._redis = conn
        self._config: Config | None = None
        self._stamp: tuple[Any, ...] = ()
        self._checked = 0.0
        self.reload_interval = reload_interval
        self._connectors: dict[str, Any] = {}

    # -- access ---------------------------------------------------------------------------------
    @classmethod
    def current(cls) -> Runtime:
        with cls._lock:
            if cls._current is None:
                cls._current = Runtime()
            return cls._current

    @classmethod
    def install(cls, runtime: Runtime | None) -> None:
        with cls._lock:
            cls._current = runtime

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = jobs.connect(self.settings.redis_url)
        return self._redis

    @property
    def config(self) -> Config:
        """The loaded config; reloaded (checked at most every ``reload_interval`` s) when a file
        changed. A reload with errors keeps the good parts and logs the problems."""
        now = time.monotonic()
        if self._config is None or now - self._checked >= self.reload_interval:
            self._checked = now
            stamp = _config_stamp(self.config_dir)
            if self._config is None or stamp != self._stamp:
                cfg = loader.load(self.config_dir, self.settings.env)
                for issue in cfg.issues:
                    log.error("config: %s", issue)
                if self._config is not None:
                    log.info("config reloaded from %s (%d rules)", self.config_dir, len(cfg.rules))
                self._config, self._stamp = cfg, stamp
        assert self._config is not None
        return self._config

    def connector(self, system: str) -> Any:
        if system not in self._connectors:
            module_name = _CONNECTOR_MODULES.get(system)
            if module_name is None:
                raise ConfigError(f"unknown system {system!r}; known: {', '.join(_CONNECTOR_MODULES)}")
            module = importlib.import_module(module_name)
            self._connectors[system] = module.connect(self.settings, self.redis)
        return self._connectors[system]

    def preload(self) -> list[str]:
        """Import the connector (and its vendor SDK) of every system the config maps, so the first
        jobs do not pay for it (the SDKs take a good part of a second to import). Returns them."""
        systems = sorted({s for m in self.config.mappings.values() for s, _ in m.systems.items()})
        for system in systems:
            module_name = _CONNECTOR_MODULES.get(system)
            if module_name is not None:
                importlib.import_module(module_name)
        return systems

    def use_connector(self, system: str, connector: Any) -> None:
        """Install a ready connector (tests, benchmarks)."""
        self._connectors[system] = connector
