"""The hub: config, expressions, rules, sync and jobs that keep the systems of record aligned."""

__version__ = "0.1.0"
