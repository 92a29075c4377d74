"""Rollouts as Edge Manager ran them: stages in order, device selection, progress, stop.

- Selection happens when a stage starts, over the fleet's registered devices:
  PERCENTAGE keeps a device when a hash of (plan, stage, device) falls below the
  percentage (deterministic: a device stays in or out across retries and processes);
  SELECTION takes the named devices; NAMECONTAINS those whose name contains the text.
- A stage may start once every earlier stage is DEPLOYED (all its devices succeeded).
- Each selected device gets a ``stage_devices`` row: READYTODEPLOY, INPROGRESS once
  GetDeployments handed it the deployment, then DEPLOYED or FAILED from its heartbeat's
  DeploymentResult (``Store.add_heartbeat``); stopping a stage turns its READYTODEPLOY rows
  to STOPPED (those devices no longer get it; devices that took it keep it).
- A stage's status and counts are computed from those rows (``stage_progress``): nothing
  is a stored counter, so racing processes cannot lose or double-count progress.
"""

import hashlib
import json

from sqlalchemy import and_, func, insert, select, update

from . import schema as t
from .errors import ApiError, in_use, not_found, validation
from .store import dumps, loads

PENDING = ("READYTODEPLOY", "INPROGRESS")


def deployment_name(plan, stage):
    """The DeploymentName devices see for a stage (an EntityName: <= 63 characters)."""
    name = "%s-%s" % (plan, stage)
    if len(name) <= 63:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:12]
    return "%s-%s" % (plan[:50].rstrip("-"), digest)


def in_percentage(plan, stage, device, percentage):
    """Whether `device` belongs to a PERCENTAGE stage (stable across calls)."""
    h = hashlib.sha256(("%s/%s/%s" % (plan, stage, device)).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") % 10000 < int(percentage) * 100


def check_selection(config):
    """Raise ValidationException when a DeviceSelectionConfig lacks what its type needs."""
    kind = config["DeviceSubsetType"]
    need = {"PERCENTAGE": "Percentage", "SELECTION": "DeviceNames",
            "NAMECONTAINS": "DeviceNameContains"}[kind]
    if config.get(need) in (None, [], ""):
        raise validation("DeviceSelectionConfig: DeviceSubsetType %s requires %s"
                         % (kind, need))
    if kind == "PERCENTAGE" and not 0 <= config["Percentage"] <= 100:
        raise validation("DeviceSelectionConfig: Percentage must be 0..100")


def select_devices(conn, fleet, plan, stage, config):
    d = t.devices.c
    names = conn.execute(select(d.name).where(and_(
        d.fleet == fleet, d.registration == "REGISTERED")).order_by(d.name)).scalars().all()
    kind = config["DeviceSubsetType"]
    if kind == "PERCENTAGE":
        return [n for n in names if in_percentage(plan, stage, n, config["Percentage"])]
    if kind == "SELECTION":
        wanted = set(config["DeviceNames"])
        return [n for n in names if n in wanted]
    return [n for n in names if config["DeviceNameContains"] in n]


def stage_progress(conn, plan):
    """{stage: {"success", "pending", "failed", "stopped"}} counted from stage_devices."""
    sd = t.stage_devices.c
    out = {}
    for stage, status, count in conn.execute(
            select(sd.stage, sd.status, func.count()).where(sd.plan == plan)
            .group_by(sd.stage, sd.status)).all():
        c = out.setdefault(stage, {"success": 0, "pending": 0, "failed": 0, "stopped": 0})
        key = {"DEPLOYED": "success", "FAILED": "failed", "STOPPED": "stopped"}.get(
            status, "pending")
        c[key] += count
    return out


def stage_status(stored, counts):
    """The StageStatus reported for a stage row's stored status and its counts."""
    if stored != "INPROGRESS":
        return stored
    if counts["pending"]:
        return "INPROGRESS"
    return "FAILED" if counts["failed"] else "DEPLOYED"


def get_stage(conn, plan, stage):
    """The stage row, or ResourceNotFound."""
    st = t.stages.c
    row = conn.execute(select(t.stages).where(and_(st.plan == plan, st.name == stage))).first()
    if row is None:
        raise not_found("Stage %s of edge deployment plan %s does not exist." % (stage, plan))
    return row


def _definitions(conn, model_configs):
    j = t.packaging_jobs.c
    out = []
    for mc in model_configs:
        job = conn.execute(select(t.packaging_jobs).where(
            j.name == mc["EdgePackagingJobName"])).first()
        if job is None or job.status != "COMPLETED" or not job.sha1:
            raise validation("Edge packaging job %s is not COMPLETED."
                             % mc["EdgePackagingJobName"])
        out.append({"ModelHandle": mc["ModelHandle"], "ModelName": job.model_name,
                    "ModelVersion": job.model_version, "S3Url": job.s3_url,
                    "Checksum": {"Type": "SHA1", "Sum": job.sha1}, "State": "DEPLOY"})
    return out


def start(store, plan_name, stage_name):
    """StartEdgeDeploymentStage: check order, select devices, hand the stage out."""
    now = store.clock()
    st = t.stages.c
    with store.tx() as conn:
        plan = conn.execute(select(t.plans).where(t.plans.c.name == plan_name)).first()
        if plan is None:
            raise not_found("Edge deployment plan %s does not exist." % plan_name)
        stage = get_stage(conn, plan_name, stage_name)
        if stage.status != "READYTODEPLOY":
            raise validation("Stage %s is %s: only a READYTODEPLOY stage can start."
                             % (stage_name, stage.status))
        progress = stage_progress(conn, plan_name)
        for earlier in conn.execute(select(st.name, st.status).where(and_(
                st.plan == plan_name, st.position < stage.position)).order_by(st.position)):
            counts = progress.get(earlier.name, {"pending": 0, "failed": 0})
            status = stage_status(earlier.status, counts)
            if status != "DEPLOYED":
                raise validation("Stage %s cannot start: earlier stage %s is %s, not DEPLOYED."
                                 % (stage_name, earlier.name, status))
        definitions = _definitions(conn, loads(plan.model_configs))
        # The conditional update makes a concurrent second start fail, not double-select.
        claimed = conn.execute(update(t.stages).where(and_(
            st.plan == plan_name, st.name == stage_name, st.status == "READYTODEPLOY"))
            .values(status="INPROGRESS", started=now, definitions=dumps(definitions)))
        if claimed.rowcount != 1:
            raise in_use("Stage %s is being started by another request." % stage_name)
        devices = select_devices(conn, plan.fleet, plan_name, stage_name,
                                 loads(stage.selection))
        if devices:
            conn.execute(insert(t.stage_devices), [
                {"plan": plan_name, "stage": stage_name, "device": d,
                 "status": "READYTODEPLOY"} for d in devices])
        conn.execute(update(t.plans).where(t.plans.c.name == plan_name).values(modified=now))


def stop(store, plan_name, stage_name):
    """StopEdgeDeploymentStage: devices that have not taken the deployment never get it."""
    st, sd = t.stages.c, t.stage_devices.c
    with store.tx() as conn:
        stage = get_stage(conn, plan_name, stage_name)
        if stage.status != "INPROGRESS":
            raise validation("Stage %s is %s: only a started stage can be stopped."
                             % (stage_name, stage.status))
        conn.execute(update(t.stages).where(and_(st.plan == plan_name, st.name == stage_name))
                     .values(status="STOPPED"))
        conn.execute(update(t.stage_devices).where(and_(
            sd.plan == plan_name, sd.stage == stage_name, sd.status == "READYTODEPLOY"))
            .values(status="STOPPED", message="Stage stopped before the device took it."))
        conn.execute(update(t.plans).where(t.plans.c.name == plan_name)
                     .values(modified=store.clock()))


def check_stage_names(existing, new_stages):
    names = list(existing)
    for s in new_stages:
        if s["StageName"] in names:
            raise validation("Stage name %s is used twice in the plan." % s["StageName"])
        names.append(s["StageName"])
        check_selection(s["DeviceSelectionConfig"])


def add_stages(conn, plan_name, new_stages, first_position):
    for i, s in enumerate(new_stages):
        conn.execute(insert(t.stages).values(
            plan=plan_name, name=s["StageName"], position=first_position + i,
            selection=json.dumps(s["DeviceSelectionConfig"], sort_keys=True),
            policy=(s.get("DeploymentConfig") or {}).get("FailureHandlingPolicy",
                                                         "ROLLBACK_ON_FAILURE"),
            status="READYTODEPLOY", deployment_name=deployment_name(plan_name, s["StageName"])))


def ensure_deletable(status, what):
    if status in ("INPROGRESS", "STARTING", "STOPPING"):
        raise ApiError(400, "ResourceInUse", "%s is %s." % (what, status))
