"""One root error, classified by what a worker should do about it.

- ``TransientError``: try again later (rate limits, 5xx, timeouts); ``retry_after`` is honoured.
- ``PermanentError``: retrying will not help; the job lands in the failed registry with this text.
- ``ConfigError``: the YAML or the environment is wrong; never retried, shown to the operator.
"""

from __future__ import annotations


class HubError(Exception):
    """Root of every error the hub raises on purpose."""


class ConfigError(HubError, ValueError):
    """The configuration (YAML files or environment) is invalid."""


class MissingSetting(ConfigError, KeyError):
    """An environment variable the configuration refers to is not set."""

    def __init__(self, name: str, where: str = "") -> None:
        self.name = name
        self.where = where
        super().__init__(name)

    def __str__(self) -> str:
        suffix = f" (needed by {self.where})" if self.where else ""
        return f"environment variable {self.name} is not set{suffix}"


class TransientError(HubError):
    """A failure expected to go away; retry, waiting at least ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """The service answered 429 (or the local governor refused to wait that long)."""


class PermanentError(HubError):
    """A failure that retrying cannot fix: a 4xx naming the system, object and field."""

    def __init__(
        self,
        message: str,
        *,
        system: str = "",
        obj: str = "",
        field: str = "",
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.system = system
        self.obj = obj
        self.field = field
        self.status = status

    def __str__(self) -> str:
        where = "/".join(p for p in (self.system, self.obj, self.field) if p)
        base = super().__str__()
        return f"{where}: {base}" if where else base


class ExpressionError(HubError):
    """A rule expression failed while being evaluated against a record."""


class SandboxViolation(ExpressionError, ConfigError):
    """An expression tried to reach outside the sandbox (dunder attributes, module walks)."""
