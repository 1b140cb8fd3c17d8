"""Settings read from the environment: the names later modules and tests rely on.

Nothing here has a secret default. Endpoints default to the vendors' real hosts; the sandbox
(`hub sandbox` / `hub up`) exports loopback ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hub.errors import MissingSetting

NAMES = (
    "REDIS_URL",
    "AIRTABLE_API_KEY",
    "AIRTABLE_ENDPOINT_URL",
    "HUBSPOT_ACCESS_TOKEN",
    "HUBSPOT_HOST",
    "HUBSPOT_CLIENT_SECRET",
    "HUBSPOT_DEVELOPER_API_KEY",
    "HUBSPOT_RATE_LIMIT",
    "HUBSPOT_SEARCH_RATE_LIMIT",
    "AIRTABLE_RATE_LIMIT",
    "MAILCHIMP_API_KEY",
    "MAILCHIMP_HOST",
    "MAILCHIMP_WEBHOOK_SECRET",
    "FIRESTORE_RELAY_SECRET",
    "HUB_PUBLIC_URL",
    "HUBSPOT_APP_ID",
    "MAILCHIMP_WEBHOOK_SOURCES",
    "FIRESTORE_EMULATOR_HOST",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "HUB_CONFIG",
    "HUB_NOW",
)

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """A snapshot of the environment at one moment (tests build their own)."""

    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name)
        return value if value not in (None, "") else default

    def require(self, name: str, where: str = "") -> str:
        value = self.get(name)
        if value is None:
            raise MissingSetting(name, where)
        return value

    def number(self, name: str, default: float) -> float:
        """A positive number setting; a bad value is a config error naming the variable."""
        raw = self.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value <= 0:
            from hub.errors import ConfigError

            raise ConfigError(f"{name} must be a positive number, got {raw!r}")
        return value

    @property
    def redis_url(self) -> str:
        return self.get("REDIS_URL", "redis://127.0.0.1:6379/0") or ""

    @property
    def config_dir(self) -> Path:
        return Path(self.get("HUB_CONFIG") or REPO_ROOT)

    @property
    def airtable_endpoint(self) -> str:
        return self.get("AIRTABLE_ENDPOINT_URL", "https://api.airtable.com") or ""

    @property
    def hubspot_host(self) -> str:
        return self.get("HUBSPOT_HOST", "https://api.hubapi.com") or ""

    @property
    def mailchimp_host(self) -> str | None:
        return self.get("MAILCHIMP_HOST")

    @property
    def firestore_project(self) -> str | None:
        return self.get("GOOGLE_CLOUD_PROJECT")


def current() -> Settings:
    return Settings()
