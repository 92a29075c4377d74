"""edgecore-fleet: a self-hosted SageMaker Edge Manager control plane (CPython only).

Layers, each a module: ``sigcheck`` (SigV4 verification with edgecore's own signer),
``validate`` (AWS-style validation against the service models), ``deviceapi`` (the
device API: GetDeployments, SendHeartbeat, GetDeviceRegistration, rest-json),
``control`` (the control plane: AWS JSON 1.1 on ``X-Amz-Target: SageMaker.<Op>``),
``rollout`` (stage device selection and status), ``store`` + ``schema`` + ``migrations``
(SQLAlchemy Core over SQLite or PostgreSQL, Alembic), ``s3`` (artifacts through
edgecore's signer), ``app`` (the WSGI application: routing, auth, errors, /healthz,
/metrics, the dashboard), ``serve`` (gunicorn). Stateless between requests: any number
of processes may share one database. Never imported by ``edgecore`` or ``edgecore_ports``;
never frozen into firmware. ``edgecore_tools.localcloud`` runs it embedded.
"""
