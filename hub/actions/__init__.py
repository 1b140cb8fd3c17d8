"""Rule actions. Importing this package registers every action in :mod:`hub.actions.registry`."""

from hub.actions import hubspot, journey, mailchimp, notify, record, webhook  # noqa: F401
