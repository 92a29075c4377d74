"""The read-only web dashboard: server-rendered HTML, no JavaScript.

``/`` or ``/dashboard``: fleets (devices registered / seen recently) and deployment plans
with each stage's progress; ``/dashboard/fleets/<name>``: its devices with their last
heartbeat, agent version and active models; ``/dashboard/plans/<name>``: its stages and
per-device status. Everything is escaped; large fleets are cut at ``MAX_ROWS`` devices.
"""

import html
import time
from urllib.parse import quote, unquote

from sqlalchemy import and_, func, select

from . import rollout
from . import schema as t
from .store import loads

MAX_ROWS = 500
RECENT = 600
STYLE = """
body{font-family:sans-serif;margin:2em;color:#222;background:#fafafa}
h1{font-size:1.6em;margin:0 0 .5em} h2{font-size:1.2em;margin-top:1.5em}
table{border-collapse:collapse;background:#fff;min-width:40em}
th,td{border:1px solid #ccc;padding:.3em .7em;text-align:left}
th{background:#234;color:#fff} .ok{color:#070} .bad{color:#b00} .muted{color:#777}
.bar{display:inline-block;height:.8em;background:#3a7} .barbad{background:#c33}
nav a{margin-right:1em}
"""


def _e(value):
    return html.escape("" if value is None else str(value))


def _when(epoch, now):
    if epoch is None:
        return '<span class="muted">never</span>'
    ago = max(0, int(now - epoch))
    text = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
    return "%s (%ds ago)" % (text, ago)


def _page(title, body):
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>%s</title>"
            "<style>%s</style></head><body><nav><a href='/dashboard'>edgecore fleet</a></nav>"
            "<h1>%s</h1>%s</body></html>" % (_e(title), STYLE, _e(title), body))


def _table(headers, rows, empty="none"):
    if not rows:
        return "<p class='muted'>%s</p>" % _e(empty)
    head = "".join("<th>%s</th>" % _e(h) for h in headers)
    return "<table><tr>%s</tr>%s</table>" % (head, "".join(
        "<tr>%s</tr>" % "".join("<td>%s</td>" % c for c in row) for row in rows))


def _progress(counts, total):
    total = max(total, 1)
    good = int(100 * counts["success"] / total)
    bad = int(100 * counts["failed"] / total)
    return ("<span class='bar' style='width:%dpx'></span><span class='bar barbad' "
            "style='width:%dpx'></span> %d deployed, %d pending, %d failed, %d stopped"
            % (good, bad, counts["success"], counts["pending"], counts["failed"],
               counts["stopped"]))


def overview(conn, now):
    d = t.devices.c
    fleets = []
    for f in conn.execute(select(t.fleets).order_by(t.fleets.c.name)):
        registered = conn.execute(select(func.count()).select_from(t.devices).where(and_(
            d.fleet == f.name, d.registration == "REGISTERED"))).scalar()
        recent = conn.execute(select(func.count()).select_from(t.devices).where(and_(
            d.fleet == f.name, d.last_heartbeat >= now - RECENT))).scalar()
        fleets.append(["<a href='/dashboard/fleets/%s'>%s</a>" % (quote(f.name), _e(f.name)),
                       _e(f.description), str(registered), str(recent)])
    plans = []
    for p in conn.execute(select(t.plans).order_by(t.plans.c.name)):
        progress = rollout.stage_progress(conn, p.name)
        stages = []
        for s in conn.execute(select(t.stages).where(t.stages.c.plan == p.name)
                              .order_by(t.stages.c.position)):
            counts = progress.get(s.name, {"success": 0, "pending": 0, "failed": 0,
                                           "stopped": 0})
            stages.append("%s: <b>%s</b> %s" % (_e(s.name), rollout.stage_status(
                s.status, counts), _progress(counts, sum(counts.values()))))
        plans.append(["<a href='/dashboard/plans/%s'>%s</a>" % (quote(p.name), _e(p.name)),
                      _e(p.fleet), "<br>".join(stages) or "<span class='muted'>no stages</span>"])
    return _page("Fleets", _table(["fleet", "description", "registered devices",
                                   "heartbeat in the last 10 min"], fleets, "no fleets")
                 + "<h2>Deployment plans</h2>"
                 + _table(["plan", "fleet", "stages"], plans, "no deployment plans"))


def fleet_page(conn, name, now):
    d = t.devices.c
    fleet = conn.execute(select(t.fleets).where(t.fleets.c.name == name)).first()
    if fleet is None:
        return None
    rows = []
    for r in conn.execute(select(t.devices).where(d.fleet == name).order_by(d.name)
                          .limit(MAX_ROWS)):
        models = ", ".join("%s %s" % (_e(m.get("ModelName")), _e(m.get("ModelVersion")))
                           for m in loads(r.models) or [])
        cls = "ok" if r.registration == "REGISTERED" else "bad"
        rows.append([_e(r.name), "<span class='%s'>%s</span>" % (cls, _e(r.registration)),
                     _when(r.last_heartbeat, now), _e(r.agent_version),
                     models or "<span class='muted'>none</span>"])
    return _page("Fleet %s" % name, _table(
        ["device", "registration", "last heartbeat", "agent", "active models"], rows,
        "no devices"))


def plan_page(conn, name, now):
    sd = t.stage_devices.c
    plan = conn.execute(select(t.plans).where(t.plans.c.name == name)).first()
    if plan is None:
        return None
    progress = rollout.stage_progress(conn, name)
    body = "<p>fleet %s; models %s</p>" % (_e(plan.fleet), _e(", ".join(
        "%s=%s" % (m["ModelHandle"], m["EdgePackagingJobName"])
        for m in loads(plan.model_configs))))
    for s in conn.execute(select(t.stages).where(t.stages.c.plan == name)
                          .order_by(t.stages.c.position)):
        counts = progress.get(s.name, {"success": 0, "pending": 0, "failed": 0, "stopped": 0})
        body += "<h2>Stage %s: %s</h2><p>%s</p>" % (
            _e(s.name), rollout.stage_status(s.status, counts),
            _progress(counts, sum(counts.values())))
        rows = [[_e(r.device), _e(r.status), _e(r.message), _when(r.started, now)]
                for r in conn.execute(select(t.stage_devices).where(and_(
                    sd.plan == name, sd.stage == s.name)).order_by(sd.device).limit(MAX_ROWS))]
        body += _table(["device", "status", "message", "taken"], rows, "no devices selected")
    return _page("Plan %s" % name, body)


def render(store, path, now):
    """(HTTP status, HTML) for a dashboard path."""
    parts = [unquote(p) for p in path.strip("/").split("/") if p]
    with store.read() as conn:
        if parts in ([], ["dashboard"]):
            return 200, overview(conn, now)
        if len(parts) == 3 and parts[0] == "dashboard" and parts[1] in ("fleets", "plans"):
            page = (fleet_page if parts[1] == "fleets" else plan_page)(conn, parts[2], now)
            if page is not None:
                return 200, page
    return 404, _page("Not found", "<p>No such page.</p>")
