"""Webhook intake: one Flask blueprint per provider, each verify → parse → de-duplicate → enqueue."""

from __future__ import annotations

import importlib

from flask import Blueprint

# One module per provider, named like its connector; "inbound" serves generic signed webhooks.
PROVIDERS = ("hubspot", "airtable", "mailchimp", "firestore", "inbound")


def blueprints() -> list[Blueprint]:
    out = []
    for name in PROVIDERS:
        try:
            module = importlib.import_module(f"webhooks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"webhooks.{name}":
                continue  # provider not built yet
            raise
        out.append(module.bp)
    return out
