"""Canonical entities: value types, and translation to and from each system's fields."""
