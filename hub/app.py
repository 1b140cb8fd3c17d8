"""The Flask app factory: one blueprint per provider under /webhooks/, plus health checks.

The app only verifies, parses, de-duplicates and enqueues; it never calls a SaaS API, so it
answers in milliseconds even when workers are down (the queue absorbs).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import redis
from flask import Flask, Response, jsonify

from hub import jobs
from hub.runtime import Runtime
from hub.settings import Settings
from webhooks import blueprints
from webhooks.intake import MAX_BODY, error


def create_app(
    settings: Settings | None = None,
    *,
    config_dir: str | Path | None = None,
    conn: redis.Redis | None = None,
    **overrides: Any,
) -> Flask:
    """Build the web app. ``overrides`` go into ``app.config`` (tests)."""
    settings = settings or Settings()
    runtime = Runtime(settings, config_dir=Path(config_dir) if config_dir else None, conn=conn)
    app = Flask("hub")
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY, JSON_SORT_KEYS=False, **overrides)
    app.extensions["hub.runtime"] = runtime
    app.extensions["hub.redis"] = runtime.redis
    app.extensions["hub.settings"] = settings
    logging.getLogger("hub.app").info("config %s: %d rule(s)", runtime.config_dir, len(runtime.config.rules))

    for bp in blueprints():
        app.register_blueprint(bp)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        problems = []
        try:
            runtime.redis.ping()
        except redis.RedisError as exc:
            problems.append(f"redis unreachable: {exc}")
        cfg = runtime.config
        if not cfg.root.is_dir():
            problems.append(f"config directory {cfg.root} does not exist")
        if problems:
            resp = jsonify({"status": "unavailable", "problems": problems})
            resp.status_code = 503
            return resp
        queued = {q: jobs.queue(runtime.redis, q).count for q in jobs.QUEUES}
        return jsonify(
            {"status": "ready", "rules": len(cfg.rules), "config_problems": len(cfg.issues), "queued": queued}
        )

    @app.errorhandler(404)
    def not_found(_: Exception) -> Response:
        return error(404, "no such endpoint")

    @app.errorhandler(405)
    def not_allowed(_: Exception) -> Response:
        return error(405, "method not allowed")

    @app.errorhandler(413)
    def too_large(_: Exception) -> Response:
        return error(413, f"body too large (limit {MAX_BODY} bytes)")

    return app
