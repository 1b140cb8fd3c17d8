"""The action registry: every ``do:`` item names one of these, with arguments checked at load.

An action is registered with its argument model; string arguments may be templates. At load the
static arguments are validated (templated ones wait until they are rendered), and at run time the
rendered arguments are validated again and handed to the action's function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from hub.engine.context import ActionContext


@dataclass(frozen=True)
class ActionSpec:
    name: str
    args: type[BaseModel]
    run: Callable[[ActionContext, Any], dict[str, Any] | None]
    marketing: bool = False  # a message to a contact: consent and contact budgets apply
    # False: the action is one write of the hub's record state, which records the action done in
    # the same script (exactly once without a lease); True: run_once's lease and done marker.
    external: bool = True
    description: str = ""
    # Cross-checks at load: (raw args, config, rule entity) → [(argument path, message)]
    check: Callable[[dict[str, Any], Any, str | None], list[tuple[str, str]]] | None = None


REGISTRY: dict[str, ActionSpec] = {}


def action(
    name: str,
    args: type[BaseModel],
    *,
    marketing: bool = False,
    external: bool = True,
    check: Callable[[dict[str, Any], Any, str | None], list[tuple[str, str]]] | None = None,
) -> Callable[[Callable[[ActionContext, Any], dict[str, Any] | None]], Callable[..., Any]]:
    """Register ``fn`` as the action ``name`` taking ``args`` (``check`` cross-checks them at load)."""

    def deco(fn: Callable[[ActionContext, Any], dict[str, Any] | None]) -> Callable[..., Any]:
        if name in REGISTRY:
            raise ValueError(f"action {name!r} is registered twice")
        summary = (fn.__doc__ or "").strip().split("\n")[0]
        REGISTRY[name] = ActionSpec(name, args, fn, marketing, external, summary, check)
        return fn

    return deco


def catalogue() -> dict[str, ActionSpec]:
    """All actions, importing the modules that register them."""
    from hub import actions  # noqa: F401  (the package imports every action module)

    return REGISTRY


def has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(has_template(v) for v in value)
    return False


def static_errors(spec: ActionSpec, raw: Any) -> list[Any]:
    """Validate ``raw`` arguments now; errors on values that are still templates wait for run time."""
    try:
        spec.args.model_validate(raw)
    except ValidationError as exc:
        return [e for e in exc.errors(include_url=False) if not has_template(e.get("input"))]
    return []
