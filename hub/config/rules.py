"""The rules file model: triggers, conditions, actions and guards.

```yaml
rules:
  - id: welcome_lead
    when: {created: client}
    if: record.status == 'lead'
    do:
      - mailchimp.tag: {tags: [welcome]}
    cooldown: 30d
```
Each ``do`` item is ``{<action>: {args}}`` or a branch ``{if: expr, then: [...], else: [...]}``; the
action names and their arguments are checked against the registry by the loader.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from hub.config.types import Cron, Duration, ExprField, Identifier, SigningSecret, Strict, TemplateField, TimeZone, Url

Scalar = str | int | float | bool | None


class ForEach(Strict):
    """Run the rule once per record of ``entity`` for which ``where`` is true (scheduled scans)."""

    entity: Identifier
    where: ExprField | None = None


class CreatedTrigger(Strict):
    created: Identifier = Field(description="Entity whose new records trigger the rule")


class UpdatedTrigger(Strict):
    updated: Identifier = Field(description="Entity whose changed records trigger the rule")
    fields: list[Identifier] | None = Field(None, description="Only when one of these fields changed")


class DeletedTrigger(Strict):
    deleted: Identifier


class ChangedTrigger(Strict):
    changed: Identifier = Field(description="Entity to watch")
    field: Identifier = Field(description="Field whose value must change")
    from_: Scalar | list[Scalar] = Field(None, alias="from", description="Previous value(s), if it matters")
    to: Scalar | list[Scalar] = Field(None, description="New value(s), if it matters")

    def matches(self, old: Any, new: Any) -> bool:
        if old == new:
            return False
        return _in(old, self.from_) and _in(new, self.to)


def _in(value: Any, wanted: Scalar | list[Scalar]) -> bool:
    if wanted is None:
        return True
    if isinstance(wanted, list):
        return value in wanted
    return bool(value == wanted)


class WebhookTrigger(Strict):
    webhook: Identifier = Field(description="Name of an inbound webhook declared under `webhooks:`")


class CronTrigger(Strict):
    cron: Cron
    for_each: ForEach | None = None


class EveryTrigger(Strict):
    every: Duration
    for_each: ForEach | None = None


TRIGGER_KEYS = ("created", "updated", "deleted", "changed", "webhook", "cron", "every")


def _trigger_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        present = [k for k in TRIGGER_KEYS if k in value]
        return present[0] if len(present) == 1 else None
    return next((k for k in TRIGGER_KEYS if getattr(value, k, None) is not None), None)


Trigger = Annotated[
    Annotated[CreatedTrigger, Tag("created")]
    | Annotated[UpdatedTrigger, Tag("updated")]
    | Annotated[DeletedTrigger, Tag("deleted")]
    | Annotated[ChangedTrigger, Tag("changed")]
    | Annotated[WebhookTrigger, Tag("webhook")]
    | Annotated[CronTrigger, Tag("cron")]
    | Annotated[EveryTrigger, Tag("every")],
    Discriminator(
        _trigger_tag,
        custom_error_type="invalid_trigger",
        custom_error_message="a trigger needs exactly one of: " + ", ".join(TRIGGER_KEYS),
    ),
]


class Rule(Strict):
    id: Identifier
    description: str = ""
    enabled: bool = True
    when: Trigger
    wait: Duration | None = Field(None, description="Act this long after the trigger; `if` is checked again then")
    if_: ExprField | None = Field(None, alias="if", description="Condition on record/event; the rule acts when true")
    do: list[dict[str, Any]] = Field(min_length=1, description="Actions, in order")
    cooldown: Duration | None = Field(None, description="At most once per record in this period")
    daily_limit: int | None = Field(None, ge=1, description="At most this many firings per day")
    budget: Identifier | None = Field(None, description="A shared contact budget declared under `budgets:`")
    marketing: bool = Field(False, description="Marketing message: only for contacts who consented")

    @property
    def entity(self) -> str | None:
        """The entity whose records the rule acts on (asked for every rule and record event: looked
        up once)."""
        return self.memo("_memo_entity", self._entity) or None

    def _entity(self) -> str:
        w = self.when
        for key in ("created", "updated", "deleted", "changed"):
            if (v := getattr(w, key, None)) is not None:
                return str(v)
        fe = getattr(w, "for_each", None)
        return fe.entity if fe is not None else ""


class Budget(Strict):
    """A contact budget shared by rules: at most ``max`` messages per contact per ``per``."""

    max: int = Field(ge=1)
    per: Duration


class InboundWebhook(Strict):
    """A generic signed webhook (Standard Webhooks) received at /webhooks/in/<name>."""

    secret: SigningSecret = Field(description="whsec_... signing secret, as ${ENV_VAR}")
    description: str = ""
    entity: Identifier | None = Field(None, description="Entity the payload refers to, if any")
    match: Identifier | None = Field(None, description="Payload key holding that entity's identity value")
    tolerance: Duration | None = Field(None, description="Accepted clock skew (default 5m)")


class Settings(Strict):
    timezone: TimeZone = "UTC"
    daily_limit_reset: Literal["midnight"] = "midnight"


class Outbound(Strict):
    """An outbound webhook target for `webhook.send`."""

    url: Url
    secret: SigningSecret = Field(description="whsec_... signing secret, as ${ENV_VAR}")


class Channel(Strict):
    """An operator channel for `notify`: a Slack-compatible incoming webhook URL."""

    url: Url = Field(description="Incoming webhook URL, as ${ENV_VAR}")


class RulesFile(Strict):
    """The top of rules.yaml; each rule is validated on its own so one bad rule stays alone."""

    settings: Settings = Field(default_factory=Settings)
    budgets: dict[Identifier, Budget] = Field(default_factory=dict)
    webhooks: dict[Identifier, InboundWebhook] = Field(default_factory=dict)
    outbound: dict[Identifier, Outbound] = Field(default_factory=dict)
    templates: dict[Identifier, TemplateField] = Field(default_factory=dict)
    channels: dict[Identifier, Channel] = Field(default_factory=dict)
    rules: list[Any] = Field(default_factory=list)
