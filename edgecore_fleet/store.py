"""Storage of the fleet server: one SQLAlchemy Core engine, SQLite or PostgreSQL.

``Store.open(url_or_path)`` connects (a bare path means SQLite) and ``migrate()`` brings
the schema to the newest Alembic revision (PostgreSQL: under an advisory lock, so many
processes may start at once). Every method is one transaction, short and self-contained:
nothing is kept between requests, so any number of server processes share one database.
Inside ``request()`` (one per API request) the methods share one pooled connection, so
a request costs one checkout and few round trips; each write still commits at its end.
SQLite transactions start with ``BEGIN IMMEDIATE`` (a writer waits for the lock instead
of failing half-way); PostgreSQL runs at READ COMMITTED with row-level conditional
updates (see ``add_heartbeat`` and ``rollout``).

The device side lives here (keys, devices, deployments handed to a device, heartbeats
and results, IoT things); the control plane's queries are in ``control`` and
``rollout`` and use ``tx()``.
"""

import json
import os
import threading
import time
from contextlib import contextmanager

from sqlalchemy import (
    and_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from . import schema as t
from .sigcheck import KeyRecord

ACTIVE_STAGE_DEVICE = ("READYTODEPLOY", "INPROGRESS", "DEPLOYED", "FAILED")
DEFAULT_OUTPUT = {"S3OutputLocation": "s3://edgecore-fleet/output"}


# The device API's statements, built once: constructing a statement costs more CPU than
# executing it (SQLAlchemy then only looks its compiled form up in its cache).
_k, _d, _sd, _st, _dep = (t.access_keys.c, t.devices.c, t.stage_devices.c, t.stages.c,
                          t.deployments.c)
KEY_LOOKUP = select(t.access_keys, t.devices).select_from(
    t.access_keys.outerjoin(t.devices, _d.name == _k.device)).where(
    _k.akid == bindparam("b_akid"))
DIRECT_DEPLOYMENTS = select(_dep.name, _dep.policy, _dep.definitions).where(and_(
    _dep.active.is_(True), or_(_dep.device == bindparam("b_device"), and_(
        _dep.device.is_(None), _dep.fleet == bindparam("b_fleet"))))).order_by(_dep.id)
STAGE_DEPLOYMENTS = select(
    _sd.plan, _sd.stage, _sd.status, _st.deployment_name, _st.policy, _st.definitions,
    _st.started).join(t.stages, and_(_st.plan == _sd.plan, _st.name == _sd.stage)).where(
    and_(_sd.device == bindparam("b_device"), _sd.status.in_(ACTIVE_STAGE_DEVICE))
    ).order_by(_st.started.desc())
TAKE_STAGE = update(t.stage_devices).where(and_(
    _sd.plan == bindparam("b_plan"), _sd.stage == bindparam("b_stage"),
    _sd.device == bindparam("b_device"), _sd.status == "READYTODEPLOY")).values(
    status="INPROGRESS", started=bindparam("b_now"))
INSERT_HEARTBEAT = insert(t.heartbeats)
INSERT_RESULT = insert(t.deployment_results)
DEVICE_SEEN = update(t.devices).where(_d.name == bindparam("b_device")).values(
    last_heartbeat=bindparam("b_received"),
    agent_version=func.coalesce(bindparam("b_agent_version"), _d.agent_version),
    models=func.coalesce(bindparam("b_models"), _d.models))
STAGE_OF_DEPLOYMENT = select(_st.plan, _st.name).where(
    _st.deployment_name == bindparam("b_name"))
FINISH_STAGE = update(t.stage_devices).where(and_(
    _sd.plan == bindparam("b_plan"), _sd.stage == bindparam("b_stage"),
    _sd.device == bindparam("b_device"), _sd.status.in_(("READYTODEPLOY", "INPROGRESS")))
    ).values(status=bindparam("b_status"), message=bindparam("b_message"),
             finished=bindparam("b_finished"), started=func.coalesce(
                 _sd.started, bindparam("b_finished")))


def dumps(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def loads(value):
    return None if value is None else json.loads(value)


def database_url(url_or_path):
    """A SQLAlchemy URL: SQLite for a path, psycopg 3 for a postgresql:// URL."""
    if "://" not in url_or_path:
        return "sqlite:///" + os.path.abspath(url_or_path)
    if url_or_path.startswith("postgresql://") or url_or_path.startswith("postgres://"):
        return "postgresql+psycopg://" + url_or_path.split("://", 1)[1]
    return url_or_path


class Store:
    """The fleet database. Attributes: url (redacted form), engine, dialect ("sqlite" or
    "postgresql"), clock."""

    def __init__(self, engine, clock=None):
        self.engine = engine
        self.dialect = engine.dialect.name
        self.url = engine.url.render_as_string(hide_password=True)
        self.clock = clock or time.time
        self._local = threading.local()

    @classmethod
    def open(cls, url_or_path, clock=None, pool_size=5):
        url = database_url(str(url_or_path))
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30,
                                                      "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _sqlite_connect(conn, _record):
                conn.isolation_level = None  # SQLAlchemy's begin hook issues BEGIN itself
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")

            @event.listens_for(engine, "begin")
            def _sqlite_begin(conn):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            # No pre-ping (a round trip per checkout): a connection broken by a database
            # restart fails one request and is then replaced by the pool.
            engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size,
                                   pool_recycle=1800)
        return cls(engine, clock)

    def close(self):
        self.engine.dispose()

    @contextmanager
    def request(self):
        """Share one connection among the store calls of this thread until the end."""
        with self.engine.connect() as conn:
            self._local.conn = conn
            try:
                yield conn
                conn.commit()
            finally:
                self._local.conn = None

    def pause(self):
        """End the request's open transaction before slow work (e.g. reading S3), so no
        lock or snapshot is held meanwhile."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.in_transaction():
            conn.commit()

    @contextmanager
    def read(self):
        """A connection to read with (the request's, if any)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def tx(self):
        """A transaction: ``with store.tx() as conn: ...``: committed at the end of the
        block (rolled back on an error), also inside ``request()``."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self.engine.begin() as conn:
                yield conn
            return
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    # ------------------------------------------------------------------ migrations
    def migrate(self):
        """Upgrade the schema to the newest revision (idempotent)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "migrations"))
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # One migrator at a time; released at commit.
                conn.execute(text("SELECT pg_advisory_xact_lock(7263540017)"))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        return self

    def revision(self):
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    # ------------------------------------------------------------------ settings
    def set_setting(self, name, value):
        with self.tx() as conn:
            conn.execute(t.settings.delete().where(t.settings.c.name == name))
            conn.execute(insert(t.settings).values(name=name, value=dumps(value)))

    def get_setting(self, name, default=None):
        with self.read() as conn:
            row = conn.execute(select(t.settings.c.value).where(t.settings.c.name == name)
                               ).first()
        return default if row is None else loads(row[0])

    # ------------------------------------------------------------------ fleets and devices
    def ensure_fleet(self, conn, name, output_config=None):
        """Create fleet `name` unless it exists (the admin helpers' implicit fleets)."""
        if conn.execute(select(t.fleets.c.name).where(t.fleets.c.name == name)).first():
            return
        now = self.clock()
        try:
            with conn.begin_nested():
                conn.execute(insert(t.fleets).values(
                    name=name, output_config=dumps(output_config or DEFAULT_OUTPUT),
                    created=now, modified=now))
        except IntegrityError:  # created meanwhile by another process
            pass

    def add_device(self, name, fleet, registration="REGISTERED", description=None,
                   iot_thing=None):
        """Register (or re-register) a device, creating its fleet if needed."""
        now = self.clock()
        with self.tx() as conn:
            self.ensure_fleet(conn, fleet)
            conn.execute(t.devices.delete().where(t.devices.c.name == name))
            conn.execute(insert(t.devices).values(
                name=name, fleet=fleet, registration=registration, description=description,
                iot_thing=iot_thing, created=now))

    def set_registration(self, name, registration):
        with self.tx() as conn:
            conn.execute(update(t.devices).where(t.devices.c.name == name)
                         .values(registration=registration))

    def device(self, name):
        """The device row as a dict (models decoded), or None."""
        with self.read() as conn:
            row = conn.execute(select(t.devices).where(t.devices.c.name == name)).first()
        return None if row is None else _device_dict(row)

    def devices(self):
        with self.read() as conn:
            rows = conn.execute(select(t.devices).order_by(t.devices.c.name)).all()
        return [_device_dict(r) for r in rows]

    # ------------------------------------------------------------------ access keys
    def add_key(self, akid, secret, token=None, expiration=None, device=None, role="device"):
        with self.tx() as conn:
            conn.execute(t.access_keys.delete().where(t.access_keys.c.akid == akid))
            conn.execute(insert(t.access_keys).values(
                akid=akid, secret=secret, token=token, expiration=expiration, device=device,
                role=role, created=self.clock()))

    def lookup_key(self, akid):
        """The key's KeyRecord, with ``device_row``: its device (one query for both)."""
        with self.read() as conn:
            r = conn.execute(KEY_LOOKUP, {"b_akid": akid}).first()
        if r is None:
            return None
        key = KeyRecord(r.akid, r.secret, r.token, r.expiration, r.device, r.role)
        if r.name is not None:
            key.device_row = _device_dict(r, t.devices.c.keys())
        return key

    def keys(self):
        """Key listing without secrets: [{akid, has_token, expiration, device, role, created}]."""
        k = t.access_keys.c
        with self.read() as conn:
            rows = conn.execute(select(k.akid, k.token, k.expiration, k.device, k.role,
                                       k.created).order_by(k.created)).all()
        return [{"akid": r.akid, "has_token": r.token is not None, "expiration": r.expiration,
                 "device": r.device, "role": r.role, "created": r.created} for r in rows]

    def delete_key(self, akid):
        with self.tx() as conn:
            return conn.execute(t.access_keys.delete().where(t.access_keys.c.akid == akid)
                                ).rowcount

    # ------------------------------------------------------------------ IoT things
    def attach_certificate(self, thing, fingerprint, device):
        """Attach a certificate to `thing`, creating it for `device` if new; a given
        device (not None) also re-maps an existing thing."""
        with self.tx() as conn:
            row = conn.execute(select(t.iot_things).where(t.iot_things.c.thing == thing)
                               ).first()
            if row is None:
                conn.execute(insert(t.iot_things).values(thing=thing, device=device))
            elif device is not None:
                conn.execute(update(t.iot_things).where(t.iot_things.c.thing == thing)
                             .values(device=device))
            a = t.iot_attachments.c
            if conn.execute(select(a.thing).where(and_(a.thing == thing,
                                                       a.fingerprint == fingerprint))).first() \
                    is None:
                conn.execute(insert(t.iot_attachments).values(thing=thing,
                                                              fingerprint=fingerprint))

    def detach_certificate(self, thing, fingerprint):
        a = t.iot_attachments.c
        with self.tx() as conn:
            conn.execute(t.iot_attachments.delete().where(
                and_(a.thing == thing, a.fingerprint == fingerprint)))

    def iot_thing(self, thing):
        """{"thing", "device", "certs": set of fingerprints} or None."""
        a = t.iot_attachments.c
        with self.read() as conn:
            row = conn.execute(select(t.iot_things).where(t.iot_things.c.thing == thing)
                               ).first()
            if row is None:
                return None
            certs = conn.execute(select(a.fingerprint).where(a.thing == thing)).scalars().all()
        return {"thing": row.thing, "device": row.device, "certs": set(certs)}

    def things_with_certificate(self, fingerprint):
        a = t.iot_attachments.c
        with self.read() as conn:
            return list(conn.execute(select(a.thing).where(a.fingerprint == fingerprint)
                                     .order_by(a.thing)).scalars())

    # ------------------------------------------------------------------ direct deployments
    def add_deployment(self, name, policy, definitions, device=None, fleet=None):
        """Record a deployment to one device or a whole fleet (outside any plan); it
        supersedes older active deployments of the same target that touch any of its
        model handles (the device then sees one desired state per handle)."""
        d = t.deployments.c
        handles = set(x["ModelHandle"] for x in definitions)
        target = and_(d.device.is_(None) if device is None else d.device == device,
                      d.fleet.is_(None) if fleet is None else d.fleet == fleet)
        with self.tx() as conn:
            for row in conn.execute(select(d.name, d.definitions).where(
                    and_(d.active.is_(True), target))).all():
                if handles & set(x["ModelHandle"] for x in loads(row.definitions)):
                    conn.execute(update(t.deployments).where(d.name == row.name)
                                 .values(active=False))
            conn.execute(insert(t.deployments).values(
                name=name, fleet=fleet, device=device, policy=policy,
                definitions=dumps(definitions), active=True, created=self.clock()))

    def cancel_deployment(self, name):
        with self.tx() as conn:
            conn.execute(update(t.deployments).where(t.deployments.c.name == name)
                         .values(active=False))

    def deployments(self, active_only=False):
        """Direct deployments, oldest first: [{name, fleet, device, policy, definitions,
        active, created}]."""
        q = select(t.deployments).order_by(t.deployments.c.id)
        if active_only:
            q = q.where(t.deployments.c.active.is_(True))
        with self.read() as conn:
            rows = conn.execute(q).all()
        return [{"name": r.name, "fleet": r.fleet, "device": r.device, "policy": r.policy,
                 "definitions": loads(r.definitions), "active": bool(r.active),
                 "created": r.created} for r in rows]

    def deployments_for(self, device, fleet):
        """What GetDeployments hands `device`: [{name, policy, definitions}] - its direct
        deployments (to it or its fleet), then the rollout stages that selected it.

        Handing a READYTODEPLOY stage over marks the device INPROGRESS (it has taken the
        deployment: stopping the stage no longer withdraws it). Of two stages touching
        the same model handle, only the one started last is handed over.
        """
        out = []
        with self.tx() as conn:
            for r in conn.execute(DIRECT_DEPLOYMENTS, {"b_device": device, "b_fleet": fleet}):
                out.append({"name": r.name, "policy": r.policy,
                            "definitions": loads(r.definitions)})
            seen = set()
            staged = []
            for r in conn.execute(STAGE_DEPLOYMENTS, {"b_device": device}).all():
                definitions = loads(r.definitions) or []
                handles = set(x["ModelHandle"] for x in definitions)
                if handles & seen:
                    continue
                seen |= handles
                staged.append({"name": r.deployment_name, "policy": r.policy,
                               "definitions": definitions})
                if r.status == "READYTODEPLOY":
                    conn.execute(TAKE_STAGE, {"b_plan": r.plan, "b_stage": r.stage,
                                              "b_device": device, "b_now": self.clock()})
        return out + staged[::-1]

    # ------------------------------------------------------------------ heartbeats
    def add_heartbeat(self, device, fleet, body, received=None, signer=None):
        """Record a heartbeat, its DeploymentResult and what it means for a rollout
        stage, and the device's latest state, in ONE transaction. Returns its id.

        Every heartbeat is kept (an agent resends one whose answer it lost: at least
        once). A result moves the device's stage row from READYTODEPLOY/INPROGRESS to
        DEPLOYED or FAILED exactly once (a conditional UPDATE; a repeated result changes
        nothing), so neither resends nor racing processes double-count it.
        """
        received = self.clock() if received is None else received
        result = body.get("DeploymentResult")
        models = body.get("Models")
        with self.tx() as conn:
            heartbeat_id = conn.execute(INSERT_HEARTBEAT, {
                "device": device, "fleet": fleet, "received": received, "body": dumps(body),
                "access_key_id": signer}).inserted_primary_key[0]
            if result is not None:
                self._record_result(conn, heartbeat_id, device, result, received)
            conn.execute(DEVICE_SEEN, {
                "b_device": device, "b_received": received,
                "b_agent_version": body.get("AgentVersion"),
                "b_models": None if models is None else dumps(models)})
        return heartbeat_id

    def _record_result(self, conn, heartbeat_id, device, result, received):
        name = result.get("DeploymentName")
        status = result.get("DeploymentStatus")
        conn.execute(INSERT_RESULT, {
            "heartbeat": heartbeat_id, "device": device, "deployment": name, "status": status,
            "received": received, "body": dumps(result)})
        if name is None:
            return
        stage = conn.execute(STAGE_OF_DEPLOYMENT, {"b_name": name}).first()
        if stage is None:
            return
        models = result.get("DeploymentModels") or []
        ok = status == "SUCCESS" or (status is None and models and all(
            m.get("Status") == "SUCCESS" for m in models))
        message = result.get("DeploymentStatusMessage")
        if not ok and not message:
            reasons = [m.get("StatusReason") for m in models if m.get("StatusReason")]
            message = "; ".join(reasons) or None
        conn.execute(FINISH_STAGE, {
            "b_plan": stage.plan, "b_stage": stage.name, "b_device": device,
            "b_status": "DEPLOYED" if ok else "FAILED",
            "b_message": None if message is None else message[:1000], "b_finished": received})

    def heartbeats(self, device=None):
        """[{id, device, fleet, received, body, access_key_id}] oldest first."""
        h = t.heartbeats.c
        q = select(h.id, h.device, h.fleet, h.received, h.body, h.access_key_id).order_by(h.id)
        if device is not None:
            q = q.where(h.device == device)
        with self.read() as conn:
            rows = conn.execute(q).all()
        return [{"id": r.id, "device": r.device, "fleet": r.fleet, "received": r.received,
                 "body": loads(r.body), "access_key_id": r.access_key_id} for r in rows]

    def results(self, device=None):
        """[{id, device, deployment, status, received, body}] oldest first."""
        r_ = t.deployment_results.c
        q = select(r_.id, r_.device, r_.deployment, r_.status, r_.received, r_.body
                   ).order_by(r_.id)
        if device is not None:
            q = q.where(r_.device == device)
        with self.read() as conn:
            rows = conn.execute(q).all()
        return [{"id": r.id, "device": r.device, "deployment": r.deployment,
                 "status": r.status, "received": r.received, "body": loads(r.body)}
                for r in rows]

    def prune_heartbeats(self, before, batch=10000):
        """Delete heartbeats received before `before` (epoch seconds), `batch` rows per
        transaction so a large history never holds long locks; results, devices' latest
        state and rollout progress are kept. Returns the number deleted."""
        h = t.heartbeats.c
        total = 0
        while True:
            with self.tx() as conn:
                ids = select(h.id).where(h.received < before).order_by(h.id).limit(batch)
                n = conn.execute(t.heartbeats.delete().where(h.id.in_(ids.scalar_subquery()))
                                 ).rowcount
            total += n
            if n < batch:
                return total

    def counts(self):
        """Figures for /metrics: devices (registered), devices seen, heartbeats, results."""
        d, h, r = t.devices.c, t.heartbeats.c, t.deployment_results.c
        with self.read() as conn:
            return {
                "devices": conn.execute(select(func.count()).select_from(t.devices).where(
                    d.registration == "REGISTERED")).scalar(),
                "devices_seen": conn.execute(select(func.count()).select_from(t.devices)
                                             .where(d.last_heartbeat.is_not(None))).scalar(),
                "heartbeats": conn.execute(select(func.count(h.id))).scalar(),
                "results": conn.execute(select(func.count(r.id))).scalar(),
            }


def _device_dict(row, columns=None):
    m = row._mapping
    out = dict((c, m[c]) for c in columns) if columns is not None else dict(m)
    out["models"] = loads(out["models"])
    return out
