"""Webhook intake: one Flask blueprint per provider, each verify → parse → de-duplicate → enqueue."""

from __future__ import annotations

import importlib

from flask import Blueprint

# One module per provider, named like its connector; "inbound" serves generic signed webhooks.
PROVIDERS = ("hubspot", "airtable", "mailchimp", "firestore", "inbound")


def blueprints() -> list[Blueprint]:
    return [importlib.import_module(f"webhooks.{name}").bp for name in PROVIDERS]
