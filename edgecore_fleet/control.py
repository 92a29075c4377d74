"""The control plane: the edge operations of botocore's ``sagemaker`` model, AWS JSON 1.1.

Inputs are validated against ``cpmodel`` (generated from botocore's model) before a
handler runs; handlers answer the dicts the model's output shapes describe (timestamps
as epoch seconds). Lists paginate as AWS does: ``MaxResults`` (default 10, at most 100)
and an opaque ``NextToken``. Missing resources are ``ResourceNotFound``, duplicates and
busy resources ``ResourceInUse``, broken rules ``ValidationException``.

Edge packaging jobs are a model registry here (there is no compiler):
``CreateEdgePackagingJob`` registers the artifact already at
``OutputConfig.S3OutputLocation`` (an ``s3://bucket/key`` object) under ModelName and
ModelVersion; the server reads it once to compute its SHA1 and the job is COMPLETED (or
FAILED, with the S3 error, when it cannot be read). A plan's
``ModelConfigs[].EdgePackagingJobName`` names such a registration.
"""

import base64
import json

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from . import rollout
from . import schema as t
from .cpmodel import OPERATIONS
from .errors import ApiError, in_use, not_found, validation
from .store import dumps, loads
from .validate import control_validator

DEFAULT_MAX_RESULTS = 10
CONNECTED_SECONDS = 600  # a device heard from within this is "connected" in fleet reports
_validator = control_validator()


# ---------------------------------------------------------------- helpers
def arn(ctx, kind, name):
    return "arn:aws:sagemaker:%s:%s:%s/%s" % (ctx.region, ctx.account, kind, name.lower())


def device_arn(ctx, fleet, device):
    return arn(ctx, "device-fleet", "%s/device/%s" % (fleet, device))


def paginate(items, params):
    """(page, next_token) of a list, AWS style."""
    limit = params.get("MaxResults") or DEFAULT_MAX_RESULTS
    offset = decode_token(params.get("NextToken"))
    page = items[offset:offset + limit]
    more = offset + limit < len(items)
    return page, (encode_token(offset + limit) if more else None)


def encode_token(offset):
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def decode_token(token):
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))["o"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError, UnicodeError):
        pass
    raise validation("Invalid pagination token: %s" % token[:100])


def with_token(out, token):
    if token is not None:
        out["NextToken"] = token
    return out


def _filter_times(rows, params):
    bounds = (("CreationTimeAfter", "created", 1), ("CreationTimeBefore", "created", -1),
              ("LastModifiedTimeAfter", "modified", 1), ("LastModifiedTimeBefore", "modified", -1))

    def ok(r):
        for param, column, sign in bounds:
            limit = params.get(param)
            if limit is not None and (r[column] - limit) * sign <= 0:
                return False
        return True
    return [r for r in rows if ok(r)]


def _sort(rows, params, keys, default="CREATION_TIME"):
    key = keys[params.get("SortBy") or default]
    return sorted(rows, key=lambda r: (r[key], r["name"]),
                  reverse=(params.get("SortOrder") or "Descending") == "Descending")


def _fleet(conn, name):
    row = conn.execute(select(t.fleets).where(t.fleets.c.name == name)).first()
    if row is None:
        raise not_found("Device fleet %s does not exist." % name)
    return row


def _plan(conn, name):
    row = conn.execute(select(t.plans).where(t.plans.c.name == name)).first()
    if row is None:
        raise not_found("Edge deployment plan %s does not exist." % name)
    return row


def _rows(conn, table):
    return [dict(r._mapping) for r in conn.execute(select(table)).all()]


# ---------------------------------------------------------------- device fleets
def _iot_alias(ctx, fleet, enabled):
    if not enabled:
        return None
    return "arn:aws:iot:%s:%s:rolealias/SageMakerEdge-%s" % (ctx.region, ctx.account, fleet)


def create_device_fleet(ctx, p):
    now = ctx.now
    with ctx.store.tx() as conn:
        if conn.execute(select(t.fleets.c.name).where(t.fleets.c.name == p["DeviceFleetName"])
                        ).first():
            raise in_use("Device fleet %s already exists." % p["DeviceFleetName"])
        conn.execute(insert(t.fleets).values(
            name=p["DeviceFleetName"], description=p.get("Description"),
            role_arn=p.get("RoleArn"), output_config=dumps(p["OutputConfig"]),
            iot_role_alias=_iot_alias(ctx, p["DeviceFleetName"], p.get("EnableIotRoleAlias")),
            created=now, modified=now))


def describe_device_fleet(ctx, p):
    with ctx.store.read() as conn:
        f = _fleet(conn, p["DeviceFleetName"])
    out = {"DeviceFleetName": f.name, "DeviceFleetArn": arn(ctx, "device-fleet", f.name),
           "OutputConfig": loads(f.output_config), "CreationTime": f.created,
           "LastModifiedTime": f.modified}
    for key, value in (("Description", f.description), ("RoleArn", f.role_arn),
                       ("IotRoleAlias", f.iot_role_alias)):
        if value is not None:
            out[key] = value
    return out


def update_device_fleet(ctx, p):
    with ctx.store.tx() as conn:
        _fleet(conn, p["DeviceFleetName"])
        values = {"output_config": dumps(p["OutputConfig"]), "modified": ctx.now}
        if "Description" in p:
            values["description"] = p["Description"]
        if "RoleArn" in p:
            values["role_arn"] = p["RoleArn"]
        if "EnableIotRoleAlias" in p:
            values["iot_role_alias"] = _iot_alias(ctx, p["DeviceFleetName"],
                                                  p["EnableIotRoleAlias"])
        conn.execute(update(t.fleets).where(t.fleets.c.name == p["DeviceFleetName"])
                     .values(**values))


def delete_device_fleet(ctx, p):
    d = t.devices.c
    with ctx.store.tx() as conn:
        _fleet(conn, p["DeviceFleetName"])
        n = conn.execute(select(func.count()).select_from(t.devices).where(and_(
            d.fleet == p["DeviceFleetName"], d.registration == "REGISTERED"))).scalar()
        if n:
            raise in_use("Device fleet %s has %d registered device(s)."
                         % (p["DeviceFleetName"], n))
        conn.execute(delete(t.fleets).where(t.fleets.c.name == p["DeviceFleetName"]))


def list_device_fleets(ctx, p):
    with ctx.store.read() as conn:
        rows = _rows(conn, t.fleets)
    rows = [r for r in _filter_times(rows, p)
            if not p.get("NameContains") or p["NameContains"] in r["name"]]
    rows = _sort(rows, p, {"NAME": "name", "CREATION_TIME": "created",
                           "LAST_MODIFIED_TIME": "modified"})
    page, token = paginate(rows, p)
    return with_token({"DeviceFleetSummaries": [
        {"DeviceFleetArn": arn(ctx, "device-fleet", r["name"]), "DeviceFleetName": r["name"],
         "CreationTime": r["created"], "LastModifiedTime": r["modified"]} for r in page]},
        token)


def get_device_fleet_report(ctx, p):
    d = t.devices.c
    with ctx.store.read() as conn:
        f = _fleet(conn, p["DeviceFleetName"])
        rows = conn.execute(select(d.name, d.last_heartbeat, d.agent_version, d.models).where(
            and_(d.fleet == f.name, d.registration == "REGISTERED"))).all()
    connected_after = ctx.now - CONNECTED_SECONDS
    versions, models = {}, {}
    connected = 0
    for r in rows:
        online = r.last_heartbeat is not None and r.last_heartbeat >= connected_after
        connected += online
        if r.agent_version:
            versions[r.agent_version] = versions.get(r.agent_version, 0) + 1
        for m in loads(r.models) or []:
            key = (m.get("ModelName"), m.get("ModelVersion"))
            if None in key:
                continue
            s = models.setdefault(key, [0, 0, 0, 0])  # offline, connected, active, sampling
            s[1 if online else 0] += 1
            if online and m.get("LatestInference", 0) >= connected_after:
                s[2] += 1
            if online and m.get("LatestSampleTime", 0) >= connected_after:
                s[3] += 1
    out = {"DeviceFleetArn": arn(ctx, "device-fleet", f.name), "DeviceFleetName": f.name,
           "OutputConfig": loads(f.output_config), "ReportGenerated": ctx.now,
           "DeviceStats": {"ConnectedDeviceCount": connected,
                           "RegisteredDeviceCount": len(rows)},
           "AgentVersions": [{"Version": v, "AgentCount": n}
                             for v, n in sorted(versions.items())],
           "ModelStats": [{"ModelName": k[0], "ModelVersion": k[1], "OfflineDeviceCount": s[0],
                           "ConnectedDeviceCount": s[1], "ActiveDeviceCount": s[2],
                           "SamplingDeviceCount": s[3]} for k, s in sorted(models.items())]}
    if f.description:
        out["Description"] = f.description
    return out


# ---------------------------------------------------------------- devices
def register_devices(ctx, p):
    d = t.devices.c
    fleet = p["DeviceFleetName"]
    with ctx.store.tx() as conn:
        _fleet(conn, fleet)
        for dev in p["Devices"]:
            row = conn.execute(select(d.fleet, d.registration).where(
                d.name == dev["DeviceName"])).first()
            if row is not None and row.fleet != fleet and row.registration == "REGISTERED":
                raise validation("Device %s is registered with device fleet %s."
                                 % (dev["DeviceName"], row.fleet))
            values = {"fleet": fleet, "registration": "REGISTERED",
                      "description": dev.get("Description"), "iot_thing": dev.get("IotThingName")}
            if row is None:
                conn.execute(insert(t.devices).values(name=dev["DeviceName"], created=ctx.now,
                                                      **values))
            else:
                conn.execute(update(t.devices).where(d.name == dev["DeviceName"])
                             .values(**values))


def deregister_devices(ctx, p):
    d = t.devices.c
    with ctx.store.tx() as conn:
        _fleet(conn, p["DeviceFleetName"])
        conn.execute(update(t.devices).where(and_(
            d.fleet == p["DeviceFleetName"], d.name.in_(p["DeviceNames"])))
            .values(registration="DEREGISTERED"))


def update_devices(ctx, p):
    d = t.devices.c
    with ctx.store.tx() as conn:
        _fleet(conn, p["DeviceFleetName"])
        for dev in p["Devices"]:
            mine = and_(d.name == dev["DeviceName"], d.fleet == p["DeviceFleetName"])
            if conn.execute(select(d.name).where(mine)).first() is None:
                raise not_found("Device %s does not exist in device fleet %s."
                                % (dev["DeviceName"], p["DeviceFleetName"]))
            values = {}
            if "Description" in dev:
                values["description"] = dev["Description"]
            if "IotThingName" in dev:
                values["iot_thing"] = dev["IotThingName"]
            if values:
                conn.execute(update(t.devices).where(mine).values(**values))


def _edge_models(models, summary=False):
    out = []
    for m in models or []:
        if not m.get("ModelName") or not m.get("ModelVersion"):
            continue
        item = {"ModelName": m["ModelName"], "ModelVersion": m["ModelVersion"]}
        if not summary:
            for k in ("LatestSampleTime", "LatestInference"):
                if m.get(k) is not None:
                    item[k] = m[k]
        out.append(item)
    return out


def _device_common(ctx, r):
    out = {"DeviceName": r["name"], "DeviceArn": device_arn(ctx, r["fleet"], r["name"]),
           "DeviceFleetName": r["fleet"], "RegistrationTime": r["created"]}
    for key, col in (("Description", "description"), ("IotThingName", "iot_thing"),
                     ("LatestHeartbeat", "last_heartbeat"), ("AgentVersion", "agent_version")):
        if r.get(col) is not None:
            out[key] = r[col]
    return out


def describe_device(ctx, p):
    r = ctx.store.device(p["DeviceName"])
    if r is None or r["fleet"] != p["DeviceFleetName"] or r["registration"] != "REGISTERED":
        raise not_found("Device %s does not exist in device fleet %s."
                        % (p["DeviceName"], p["DeviceFleetName"]))
    out = _device_common(ctx, r)
    out["Models"] = _edge_models(r["models"])
    return out


def list_devices(ctx, p):
    d = t.devices.c
    q = select(t.devices).where(d.registration == "REGISTERED").order_by(d.name)
    if p.get("DeviceFleetName"):
        q = q.where(d.fleet == p["DeviceFleetName"])
    if p.get("LatestHeartbeatAfter") is not None:
        q = q.where(d.last_heartbeat > p["LatestHeartbeatAfter"])
    model = p.get("ModelName")
    limit = p.get("MaxResults") or DEFAULT_MAX_RESULTS
    offset = decode_token(p.get("NextToken"))
    with ctx.store.read() as conn:
        if model is None:  # paged in SQL: fleets may hold many devices
            rows = [dict(r._mapping) for r in conn.execute(q.offset(offset).limit(limit + 1))]
            more, page = len(rows) > limit, rows[:limit]
        else:
            rows = [dict(r._mapping) for r in conn.execute(q)]
            rows = [r for r in rows if any(m.get("ModelName") == model
                                           for m in loads(r["models"]) or [])]
            more, page = offset + limit < len(rows), rows[offset:offset + limit]
    summaries = []
    for r in page:
        s = _device_common(ctx, r)
        s["Models"] = _edge_models(loads(r["models"]), summary=True)
        summaries.append(s)
    return with_token({"DeviceSummaries": summaries},
                      encode_token(offset + limit) if more else None)


# ---------------------------------------------------------------- packaging jobs
def create_edge_packaging_job(ctx, p):
    j = t.packaging_jobs.c
    url = p["OutputConfig"]["S3OutputLocation"]
    with ctx.store.read() as conn:
        if conn.execute(select(j.name).where(j.name == p["EdgePackagingJobName"])).first():
            raise in_use("Edge packaging job %s already exists." % p["EdgePackagingJobName"])
    if not url.startswith("s3://"):
        raise validation("OutputConfig.S3OutputLocation must be the s3://bucket/key of the "
                         "packaged model")
    ctx.store.pause()
    sha1 = size = message = None
    status = "COMPLETED"
    if ctx.s3 is None:
        status, message = "FAILED", "The server has no S3 configured."
    else:
        from .s3 import S3Error

        try:
            sha1, size = ctx.s3.sha1(url)
        except (S3Error, ValueError, OSError) as exc:
            status, message = "FAILED", "Cannot read %s: %s" % (url, exc)
    register_model(ctx.store, p["EdgePackagingJobName"], p["ModelName"], p["ModelVersion"],
                   url, sha1, size, status=status, message=message,
                   compilation_job=p["CompilationJobName"], role_arn=p["RoleArn"],
                   output_config=p["OutputConfig"])


def register_model(store, name, model_name, model_version, s3_url, sha1, size=None,
                   status="COMPLETED", message=None, compilation_job=None, role_arn=None,
                   output_config=None):
    """Record a packaged model (also the admin helpers' entry point)."""
    now = store.clock()
    with store.tx() as conn:
        try:
            with conn.begin_nested():
                conn.execute(insert(t.packaging_jobs).values(
                    name=name, compilation_job=compilation_job, model_name=model_name,
                    model_version=model_version, role_arn=role_arn,
                    output_config=dumps(output_config or {"S3OutputLocation": s3_url}),
                    s3_url=s3_url, sha1=sha1, size=size, status=status, message=message,
                    created=now, modified=now))
        except IntegrityError:
            raise in_use("Edge packaging job %s already exists." % name) from None


def _job_summary(ctx, r):
    return {"EdgePackagingJobArn": arn(ctx, "edge-packaging-job", r["name"]),
            "EdgePackagingJobName": r["name"], "EdgePackagingJobStatus": r["status"],
            "CompilationJobName": r["compilation_job"] or r["name"],
            "ModelName": r["model_name"], "ModelVersion": r["model_version"],
            "CreationTime": r["created"], "LastModifiedTime": r["modified"]}


def describe_edge_packaging_job(ctx, p):
    j = t.packaging_jobs.c
    with ctx.store.read() as conn:
        row = conn.execute(select(t.packaging_jobs).where(j.name == p["EdgePackagingJobName"])
                           ).first()
    if row is None:
        raise not_found("Edge packaging job %s does not exist." % p["EdgePackagingJobName"])
    r = dict(row._mapping)
    out = _job_summary(ctx, r)
    out["OutputConfig"] = loads(r["output_config"])
    out["ModelArtifact"] = r["s3_url"]
    if r["role_arn"]:
        out["RoleArn"] = r["role_arn"]
    if r["sha1"]:
        out["ModelSignature"] = "SHA1:%s" % r["sha1"]
    if r["message"]:
        out["EdgePackagingJobStatusMessage"] = r["message"]
    return out


def list_edge_packaging_jobs(ctx, p):
    with ctx.store.read() as conn:
        rows = _rows(conn, t.packaging_jobs)
    rows = [r for r in _filter_times(rows, p)
            if (not p.get("NameContains") or p["NameContains"] in r["name"])
            and (not p.get("ModelNameContains") or p["ModelNameContains"] in r["model_name"])
            and (not p.get("StatusEquals") or p["StatusEquals"] == r["status"])]
    rows = _sort(rows, p, {"NAME": "name", "MODEL_NAME": "model_name",
                           "CREATION_TIME": "created", "LAST_MODIFIED_TIME": "modified",
                           "STATUS": "status"})
    page, token = paginate(rows, p)
    return with_token({"EdgePackagingJobSummaries": [_job_summary(ctx, r) for r in page]},
                      token)


# ---------------------------------------------------------------- plans and stages
def _check_model_configs(conn, configs):
    handles = [c["ModelHandle"] for c in configs]
    if len(set(handles)) != len(handles):
        raise validation("ModelConfigs: a ModelHandle appears twice.")
    j = t.packaging_jobs.c
    for c in configs:
        if conn.execute(select(j.name).where(j.name == c["EdgePackagingJobName"])).first() \
                is None:
            raise validation("Edge packaging job %s does not exist." % c["EdgePackagingJobName"])


def create_edge_deployment_plan(ctx, p):
    name = p["EdgeDeploymentPlanName"]
    stages = p.get("Stages") or []
    rollout.check_stage_names((), stages)
    with ctx.store.tx() as conn:
        _fleet(conn, p["DeviceFleetName"])
        if conn.execute(select(t.plans.c.name).where(t.plans.c.name == name)).first():
            raise in_use("Edge deployment plan %s already exists." % name)
        _check_model_configs(conn, p["ModelConfigs"])
        conn.execute(insert(t.plans).values(name=name, fleet=p["DeviceFleetName"],
                                            model_configs=dumps(p["ModelConfigs"]),
                                            created=ctx.now, modified=ctx.now))
        rollout.add_stages(conn, name, stages, 0)
    return {"EdgeDeploymentPlanArn": arn(ctx, "edge-deployment", name)}


def create_edge_deployment_stage(ctx, p):
    name = p["EdgeDeploymentPlanName"]
    st = t.stages.c
    with ctx.store.tx() as conn:
        _plan(conn, name)
        existing = conn.execute(select(st.name, st.position).where(st.plan == name)
                                .order_by(st.position)).all()
        rollout.check_stage_names([r.name for r in existing], p["Stages"])
        rollout.add_stages(conn, name, p["Stages"], existing[-1].position + 1 if existing else 0)
        conn.execute(update(t.plans).where(t.plans.c.name == name).values(modified=ctx.now))


def delete_edge_deployment_stage(ctx, p):
    st = t.stages.c
    with ctx.store.tx() as conn:
        stage = rollout.get_stage(conn, p["EdgeDeploymentPlanName"], p["StageName"])
        if stage.status != "READYTODEPLOY":
            raise in_use("Stage %s has been started; it cannot be deleted." % p["StageName"])
        conn.execute(delete(t.stages).where(and_(st.plan == p["EdgeDeploymentPlanName"],
                                                 st.name == p["StageName"])))


def start_edge_deployment_stage(ctx, p):
    rollout.start(ctx.store, p["EdgeDeploymentPlanName"], p["StageName"])


def stop_edge_deployment_stage(ctx, p):
    rollout.stop(ctx.store, p["EdgeDeploymentPlanName"], p["StageName"])


def _plan_summary(conn, plan_name):
    """(stage rows with status and counts, totals)."""
    st = t.stages.c
    progress = rollout.stage_progress(conn, plan_name)
    zero = {"success": 0, "pending": 0, "failed": 0, "stopped": 0}
    stages, totals = [], dict(zero)
    for s in conn.execute(select(t.stages).where(st.plan == plan_name).order_by(st.position)):
        counts = progress.get(s.name, zero)
        for k in totals:
            totals[k] += counts[k]
        stages.append((s, rollout.stage_status(s.status, counts), counts))
    return stages, totals


def describe_edge_deployment_plan(ctx, p):
    with ctx.store.read() as conn:
        plan = _plan(conn, p["EdgeDeploymentPlanName"])
        stages, totals = _plan_summary(conn, plan.name)
    summaries = []
    for s, status, counts in stages:
        deployment_status = {"StageStatus": status,
                             "EdgeDeploymentSuccessInStage": counts["success"],
                             "EdgeDeploymentPendingInStage": counts["pending"],
                             "EdgeDeploymentFailedInStage": counts["failed"]}
        if s.started is not None:
            deployment_status["EdgeDeploymentStageStartTime"] = s.started
        if counts["stopped"]:
            deployment_status["EdgeDeploymentStatusMessage"] = (
                "%d device(s) stopped before taking the deployment." % counts["stopped"])
        summaries.append({"StageName": s.name, "DeviceSelectionConfig": loads(s.selection),
                          "DeploymentConfig": {"FailureHandlingPolicy": s.policy},
                          "DeploymentStatus": deployment_status})
    page, token = paginate(summaries, p)
    return with_token({
        "EdgeDeploymentPlanArn": arn(ctx, "edge-deployment", plan.name),
        "EdgeDeploymentPlanName": plan.name, "ModelConfigs": loads(plan.model_configs),
        "DeviceFleetName": plan.fleet, "EdgeDeploymentSuccess": totals["success"],
        "EdgeDeploymentPending": totals["pending"], "EdgeDeploymentFailed": totals["failed"],
        "Stages": page, "CreationTime": plan.created, "LastModifiedTime": plan.modified}, token)


def list_edge_deployment_plans(ctx, p):
    with ctx.store.read() as conn:
        rows = _rows(conn, t.plans)
        rows = [r for r in _filter_times(rows, p)
                if (not p.get("NameContains") or p["NameContains"] in r["name"])
                and (not p.get("DeviceFleetNameContains")
                     or p["DeviceFleetNameContains"] in r["fleet"])]
        rows = _sort(rows, p, {"NAME": "name", "DEVICE_FLEET_NAME": "fleet",
                               "CREATION_TIME": "created", "LAST_MODIFIED_TIME": "modified"})
        page, token = paginate(rows, p)
        out = []
        for r in page:
            _, totals = _plan_summary(conn, r["name"])
            out.append({"EdgeDeploymentPlanArn": arn(ctx, "edge-deployment", r["name"]),
                        "EdgeDeploymentPlanName": r["name"], "DeviceFleetName": r["fleet"],
                        "EdgeDeploymentSuccess": totals["success"],
                        "EdgeDeploymentPending": totals["pending"],
                        "EdgeDeploymentFailed": totals["failed"],
                        "CreationTime": r["created"], "LastModifiedTime": r["modified"]})
    return with_token({"EdgeDeploymentPlanSummaries": out}, token)


def delete_edge_deployment_plan(ctx, p):
    name = p["EdgeDeploymentPlanName"]
    with ctx.store.tx() as conn:
        _plan(conn, name)
        stages, _ = _plan_summary(conn, name)
        for s, status, _counts in stages:
            rollout.ensure_deletable(status, "Stage %s" % s.name)
        conn.execute(delete(t.stage_devices).where(t.stage_devices.c.plan == name))
        conn.execute(delete(t.stages).where(t.stages.c.plan == name))
        conn.execute(delete(t.plans).where(t.plans.c.name == name))


def list_stage_devices(ctx, p):
    sd, d = t.stage_devices.c, t.devices.c
    plan_name, stage_name = p["EdgeDeploymentPlanName"], p["StageName"]
    limit = p.get("MaxResults") or DEFAULT_MAX_RESULTS
    offset = decode_token(p.get("NextToken"))
    with ctx.store.read() as conn:
        plan = _plan(conn, plan_name)
        rollout.get_stage(conn, plan_name, stage_name)
        q = (select(sd.device, sd.status, sd.message, sd.started, d.description)
             .select_from(t.stage_devices.outerjoin(t.devices, d.name == sd.device))
             .where(and_(sd.plan == plan_name, sd.stage == stage_name)).order_by(sd.device))
        rows = conn.execute(q.offset(offset).limit(limit + 1)).all()
        more, rows = len(rows) > limit, rows[:limit]
        deployed_in = {}
        names = [r.device for r in rows]
        if names:
            st = t.stages.c
            for dev, stage in conn.execute(
                    select(sd.device, sd.stage).join(t.stages, and_(
                        st.plan == sd.plan, st.name == sd.stage))
                    .where(and_(sd.plan == plan_name, sd.device.in_(names),
                                sd.status == "DEPLOYED")).order_by(st.position)):
                deployed_in[dev] = stage
    out = []
    for r in rows:
        if p.get("ExcludeDevicesDeployedInOtherStage") and deployed_in.get(
                r.device, stage_name) != stage_name:
            continue
        item = {"EdgeDeploymentPlanArn": arn(ctx, "edge-deployment", plan_name),
                "EdgeDeploymentPlanName": plan_name, "StageName": stage_name,
                "DeviceFleetName": plan.fleet, "DeviceName": r.device,
                "DeviceArn": device_arn(ctx, plan.fleet, r.device),
                "DeviceDeploymentStatus": r.status}
        if r.device in deployed_in:
            item["DeployedStageName"] = deployed_in[r.device]
        if r.message:
            item["DeviceDeploymentStatusMessage"] = r.message
        if r.description:
            item["Description"] = r.description
        if r.started is not None:
            item["DeploymentStartTime"] = r.started
        out.append(item)
    return with_token({"DeviceDeploymentSummaries": out},
                      encode_token(offset + limit) if more else None)


HANDLERS = {
    "CreateDeviceFleet": create_device_fleet,
    "DescribeDeviceFleet": describe_device_fleet,
    "UpdateDeviceFleet": update_device_fleet,
    "DeleteDeviceFleet": delete_device_fleet,
    "ListDeviceFleets": list_device_fleets,
    "GetDeviceFleetReport": get_device_fleet_report,
    "RegisterDevices": register_devices,
    "DeregisterDevices": deregister_devices,
    "UpdateDevices": update_devices,
    "DescribeDevice": describe_device,
    "ListDevices": list_devices,
    "CreateEdgePackagingJob": create_edge_packaging_job,
    "DescribeEdgePackagingJob": describe_edge_packaging_job,
    "ListEdgePackagingJobs": list_edge_packaging_jobs,
    "CreateEdgeDeploymentPlan": create_edge_deployment_plan,
    "CreateEdgeDeploymentStage": create_edge_deployment_stage,
    "DeleteEdgeDeploymentStage": delete_edge_deployment_stage,
    "StartEdgeDeploymentStage": start_edge_deployment_stage,
    "StopEdgeDeploymentStage": stop_edge_deployment_stage,
    "DescribeEdgeDeploymentPlan": describe_edge_deployment_plan,
    "ListEdgeDeploymentPlans": list_edge_deployment_plans,
    "DeleteEdgeDeploymentPlan": delete_edge_deployment_plan,
    "ListStageDevices": list_stage_devices,
}


def handle(ctx, operation, params):
    """Validate and run one control-plane operation (admin keys only)."""
    if ctx.verified.key.role != "admin":
        raise ApiError(403, "AccessDeniedException",
                       "User: %s is not authorized to perform: sagemaker:%s"
                       % (ctx.verified.key.access_key, operation))
    _validator.validate(OPERATIONS[operation][0], params)
    return HANDLERS[operation](ctx, params) or {}
