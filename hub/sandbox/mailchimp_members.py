"""Member routes of the Mailchimp stand-in: upsert (PUT), add (POST), update (PATCH), archive
(DELETE), permanent delete, list/paging with filters, batch subscribe, tags and events. The
write rules themselves are in :mod:`hub.sandbox.mailchimp_upsert`.

Every change made through the API fires the list webhooks whose ``sources.api`` is on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request

from hub.sandbox.mailchimp_http import bool_arg, json_body, json_response, no_content, page_args, projected
from hub.sandbox.mailchimp_model import (
    MAX_BATCH,
    Problem,
    check_email,
    check_event,
    check_tag_updates,
    invalid,
    not_found,
    parse_time,
    render,
    set_status,
    stamp,
    stamp_value,
    subscriber_hash,
)
from hub.sandbox.mailchimp_upsert import (
    add_tags,
    batch_error,
    change_email,
    check_new_email,
    check_status_change,
    live_member,
    member_key,
    status_events,
    update_member,
    upsert,
)

if TYPE_CHECKING:
    from hub.sandbox.mailchimp import MailchimpStandIn

SORT_FIELDS = ("timestamp_opt", "timestamp_signup", "last_changed")


def _filtered(lst: dict[str, Any]) -> list[dict[str, Any]]:
    """The members a GET /members query selects, in the requested order."""
    args = request.args
    members = list(lst["_members"].values())
    if args.get("status"):
        members = [m for m in members if m["status"] == args["status"]]
    if args.get("email_type"):
        members = [m for m in members if m["email_type"] == args["email_type"]]
    if args.get("unique_email_id"):
        members = [m for m in members if m["unique_email_id"] == args["unique_email_id"]]
    if bool_arg("vip_only"):
        members = [m for m in members if m["vip"]]
    for param, key, after in (
        ("since_last_changed", "last_changed", True),
        ("before_last_changed", "last_changed", False),
        ("since_timestamp_opt", "timestamp_opt", True),
        ("before_timestamp_opt", "timestamp_opt", False),
    ):
        if args.get(param):
            limit = parse_time(args[param], param)
            members = [
                m for m in members if m[key] and (stamp_value(m[key]) > limit if after else stamp_value(m[key]) < limit)
            ]
    sort_field = args.get("sort_field")
    if sort_field:
        if sort_field not in SORT_FIELDS:
            raise Problem(400, "Bad Request", f"sort_field must be one of {', '.join(SORT_FIELDS)}.")
        members.sort(key=lambda m: stamp_value(m[sort_field]), reverse=args.get("sort_dir", "ASC").upper() == "DESC")
    return members


def register_member_routes(mc: MailchimpStandIn, app: Flask) -> None:
    base = "/3.0/lists/<list_id>/members"

    @app.get(base)
    def _members(list_id: str) -> Response:
        count, offset = page_args()
        with mc.lock:
            lst = mc.get_list(list_id)
            members = _filtered(lst)
            base = mc.base_url()
            page = [render(m, base) for m in members[offset : offset + count]]
        return json_response(projected({"members": page, "list_id": list_id, "total_items": len(members)}))

    @app.post(base)
    def _add(list_id: str) -> Response:
        body = json_body()
        with mc.lock:
            member, _ = upsert(
                mc,
                mc.get_list(list_id),
                None,
                body,
                mode="post",
                skip_required=bool_arg("skip_merge_validation"),
            )
            mc.changed()
            return json_response(render(member, mc.base_url()))

    @app.get(base + "/<key>")
    def _get(list_id: str, key: str) -> Response:
        with mc.lock:
            member = mc.get_list(list_id)["_members"].get(member_key(key))
            if member is None:
                raise not_found()
            return json_response(projected(render(member, mc.base_url())))

    @app.put(base + "/<key>")
    def _put(list_id: str, key: str) -> Response:
        body = json_body()
        with mc.lock:
            member, _ = upsert(
                mc,
                mc.get_list(list_id),
                key,
                body,
                mode="put",
                skip_required=bool_arg("skip_merge_validation"),
            )
            mc.changed()
            return json_response(render(member, mc.base_url()))

    @app.patch(base + "/<key>")
    def _patch(list_id: str, key: str) -> Response:
        body = json_body()
        with mc.lock:
            lst = mc.get_list(list_id)
            member = live_member(lst, key)
            email = body.get("email_address")
            moving = email is not None and subscriber_hash(check_email(email)) != member["id"]
            if moving:
                check_new_email(lst, email)
            check_status_change(member, body.get("status"))
            before = member["status"]
            changed = update_member(
                lst,
                member,
                body,
                now=mc.now(),
                ip=request.remote_addr or "",
                skip_required=bool_arg("skip_merge_validation"),
            )
            if moving:
                change_email(mc, lst, member, email, "api")
            status_events(mc, lst, member, before, changed, "api")
            mc.changed()
            return json_response(render(member, mc.base_url()))

    @app.delete(base + "/<key>")
    def _archive(list_id: str, key: str) -> Response:
        with mc.lock:
            lst = mc.get_list(list_id)
            member = live_member(lst, key)
            mc.fire(lst, "unsubscribe", "api", member, {"action": "delete", "reason": "manual"})
            set_status(member, "archived", now=mc.now())
            mc.changed()
        return no_content()

    @app.post(base + "/<key>/actions/delete-permanent")
    def _forget(list_id: str, key: str) -> Response:
        with mc.lock:
            lst = mc.get_list(list_id)
            member = lst["_members"].pop(member_key(key), None)
            if member is None:
                raise not_found()
            lst["_forgotten"].append(member["id"])
            if member["status"] != "archived":
                mc.fire(lst, "unsubscribe", "api", member, {"action": "delete", "reason": "manual"})
            mc.changed()
        return no_content()

    @app.get(base + "/<key>/tags")
    def _tags(list_id: str, key: str) -> Response:
        count, offset = page_args()
        with mc.lock:
            tags = list(live_member(mc.get_list(list_id), key)["tags"])
        return json_response(projected({"tags": tags[offset : offset + count], "total_items": len(tags)}))

    @app.post(base + "/<key>/tags")
    def _update_tags(list_id: str, key: str) -> Response:
        updates = check_tag_updates(json_body())
        with mc.lock:
            lst = mc.get_list(list_id)
            member = live_member(lst, key)
            if add_tags(lst, member, updates, mc.now()):
                member["last_changed"] = stamp(mc.now())
            mc.changed()
        return no_content()

    @app.get(base + "/<key>/events")
    def _events(list_id: str, key: str) -> Response:
        count, offset = page_args()
        with mc.lock:
            events = [
                {k: v for k, v in e.items() if k != "is_syncing"}
                for e in reversed(live_member(mc.get_list(list_id), key)["_events"])
            ]
        return json_response(projected({"events": events[offset : offset + count], "total_items": len(events)}))

    @app.post(base + "/<key>/events")
    def _add_event(list_id: str, key: str) -> Response:
        body = json_body()
        with mc.lock:
            member = live_member(mc.get_list(list_id), key)
            member["_events"].append(check_event(body, mc.now()))
            mc.changed()
        return no_content()

    @app.post("/3.0/lists/<list_id>")
    def _batch(list_id: str) -> Response:
        body = json_body()
        members = body.get("members")
        if not isinstance(members, list):
            raise invalid(errors=[{"field": "members", "message": "members must be a list."}])
        if len(members) > MAX_BATCH:
            raise invalid(
                errors=[
                    {
                        "field": "members",
                        "message": f"A batch holds at most {MAX_BATCH} members, got {len(members)}.",
                    }
                ]
            )
        update_existing = bool(body.get("update_existing", False))
        skip = bool_arg("skip_merge_validation")
        created, updated, errors = [], [], []
        base = mc.base_url()
        with mc.lock:
            at = mc.now(), request.remote_addr or ""  # one request: one time and one address for its members
            lst = mc.get_list(list_id)
            for item in members:
                email = item.get("email_address") if isinstance(item, dict) else None
                try:
                    if not isinstance(item, dict):
                        raise invalid(errors=[{"field": "", "message": "Each member must be an object."}])
                    member, new = upsert(
                        mc, lst, None, item, mode="batch", update_existing=update_existing, skip_required=skip, at=at
                    )
                except Problem as exc:
                    errors.append(batch_error(email, exc))
                    continue
                (created if new else updated).append(render(member, base))
            mc.changed()
        return json_response(
            {
                "new_members": created,
                "updated_members": updated,
                "errors": errors,
                "total_created": len(created),
                "total_updated": len(updated),
                "error_count": len(errors),
            }
        )
