"""Audience (list) and merge field routes of the Mailchimp stand-in, plus the ping."""

from __future__ import annotations

import secrets
from collections import Counter
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request

from hub.sandbox.mailchimp_http import json_body, json_response, no_content, page_args, projected
from hub.sandbox.mailchimp_merge import default_merge_fields, new_merge_field
from hub.sandbox.mailchimp_model import invalid, not_found, stamp

if TYPE_CHECKING:
    from hub.sandbox.mailchimp import MailchimpStandIn

SEED_LIST = {
    "name": "Hub sandbox audience",
    "contact": {
        "company": "Hub sandbox",
        "address1": "1 Loopback Road",
        "city": "Localhost",
        "state": "",
        "zip": "00000",
        "country": "FR",
    },
    "permission_reminder": "You signed up on our website.",
    "campaign_defaults": {
        "from_name": "Hub sandbox",
        "from_email": "hub@example.com",
        "subject": "",
        "language": "fr",
    },
    "email_type_option": False,
}


def new_list(mc: MailchimpStandIn, list_id: str, body: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """A list as Mailchimp shows it; ``_``-prefixed keys hold what lives under it (members, merge
    fields, webhooks, forgotten hashes, tag ids) and are never rendered."""
    state["next_web_id"] += 1
    return {
        "id": list_id,
        "web_id": state["next_web_id"],
        "name": body["name"],
        "contact": body["contact"],
        "permission_reminder": body["permission_reminder"],
        "use_archive_bar": True,
        "campaign_defaults": body["campaign_defaults"],
        "notify_on_subscribe": "",
        "notify_on_unsubscribe": "",
        "date_created": stamp(mc.clock()),
        "list_rating": 0,
        "email_type_option": body["email_type_option"],
        "subscribe_url_short": "",
        "subscribe_url_long": "",
        "beamer_address": "",
        "visibility": "prv",
        "double_optin": bool(body.get("double_optin", False)),
        "has_welcome": False,
        "marketing_permissions": False,
        "modules": [],
        "_merge_fields": default_merge_fields(list_id),
        "_next_merge_id": 6,
        "_members": {},
        "_forgotten": [],
        "_webhooks": {},
        "_tag_ids": {},
        "_next_tag_id": 1,
    }


def render_list(mc: MailchimpStandIn, lst: dict[str, Any]) -> dict[str, Any]:
    """The public JSON of a list, with stats counted from its members."""
    doc = {k: v for k, v in lst.items() if not k.startswith("_")}
    statuses = Counter(m["status"] for m in lst["_members"].values())
    doc["stats"] = {
        "member_count": statuses["subscribed"],
        "unsubscribe_count": statuses["unsubscribed"],
        "cleaned_count": statuses["cleaned"],
        "merge_field_count": len(lst["_merge_fields"]),
        "campaign_count": 0,
        "campaign_last_sent": "",
        "avg_sub_rate": 0,
        "avg_unsub_rate": 0,
        "open_rate": 0,
        "click_rate": 0,
        "last_sub_date": "",
        "last_unsub_date": "",
    }
    doc["_links"] = [{"rel": "self", "href": f"{mc.base_url()}/lists/{lst['id']}", "method": "GET"}]
    return doc


def register_list_routes(mc: MailchimpStandIn, app: Flask) -> None:
    @app.get("/3.0/")
    @app.get("/3.0/ping")
    def _ping() -> Response:
        return json_response({"health_status": "Everything's Chimpy!"})

    @app.get("/3.0/lists")
    def _lists() -> Response:
        count, offset = page_args()
        with mc.lock:
            docs = [render_list(mc, lst) for lst in mc.state["lists"].values()]
        body = {
            "lists": docs[offset : offset + count],
            "total_items": len(docs),
            "constraints": {
                "may_create": True,
                "max_instances": 100,
                "current_total_instances": len(docs),
            },
        }
        return json_response(projected(body))

    @app.post("/3.0/lists")
    def _create_list() -> Response:
        body = json_body()
        required = ("name", "contact", "permission_reminder", "campaign_defaults", "email_type_option")
        missing = [k for k in required if k not in body]
        if missing:
            raise invalid(errors=[{"field": k, "message": "This value should not be blank."} for k in missing])
        with mc.lock:
            list_id = secrets.token_hex(5)
            lst = mc.state["lists"][list_id] = new_list(mc, list_id, body, mc.state)
            mc.changed()
            return json_response(render_list(mc, lst))

    @app.get("/3.0/lists/<list_id>")
    def _get_list(list_id: str) -> Response:
        with mc.lock:
            return json_response(projected(render_list(mc, mc.get_list(list_id))))

    @app.get("/3.0/lists/<list_id>/merge-fields")
    def _merge_fields(list_id: str) -> Response:
        count, offset = page_args()
        with mc.lock:
            fields = [render_field(mc, f) for f in mc.get_list(list_id)["_merge_fields"]]
        if request.args.get("type"):
            fields = [f for f in fields if f["type"] == request.args["type"]]
        body = {
            "merge_fields": fields[offset : offset + count],
            "list_id": list_id,
            "total_items": len(fields),
        }
        return json_response(projected(body))

    @app.post("/3.0/lists/<list_id>/merge-fields")
    def _add_merge_field(list_id: str) -> Response:
        body = json_body()
        with mc.lock:
            lst = mc.get_list(list_id)
            if len(lst["_merge_fields"]) >= mc.max_merge_fields:
                raise invalid(f"This audience already has the maximum of {mc.max_merge_fields} merge fields.")
            field = new_merge_field(list_id, lst["_next_merge_id"], body, lst["_merge_fields"])
            lst["_next_merge_id"] += 1
            lst["_merge_fields"].append(field)
            for member in lst["_members"].values():  # every member shows every field
                member["merge_fields"].setdefault(field["tag"], field["default_value"])
            mc.changed()
            return json_response(render_field(mc, field))

    @app.get("/3.0/lists/<list_id>/merge-fields/<int:merge_id>")
    def _get_merge_field(list_id: str, merge_id: int) -> Response:
        with mc.lock:
            for field in mc.get_list(list_id)["_merge_fields"]:
                if field["merge_id"] == merge_id:
                    return json_response(projected(render_field(mc, field)))
        raise not_found()

    @app.delete("/3.0/lists/<list_id>/merge-fields/<int:merge_id>")
    def _delete_merge_field(list_id: str, merge_id: int) -> Response:
        with mc.lock:
            lst = mc.get_list(list_id)
            kept = [f for f in lst["_merge_fields"] if f["merge_id"] != merge_id]
            if len(kept) == len(lst["_merge_fields"]):
                raise not_found()
            gone = {f["tag"] for f in lst["_merge_fields"]} - {f["tag"] for f in kept}
            lst["_merge_fields"] = kept
            for member in lst["_members"].values():
                for tag in gone:
                    member["merge_fields"].pop(tag, None)
            mc.changed()
        return no_content()


def render_field(mc: MailchimpStandIn, field: dict[str, Any]) -> dict[str, Any]:
    href = f"{mc.base_url()}/lists/{field['list_id']}/merge-fields/{field['merge_id']}"
    return {**field, "_links": [{"rel": "self", "href": href, "method": "GET"}]}
