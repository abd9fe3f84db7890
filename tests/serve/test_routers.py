"""The server as routers (issue 23 part 6): no web framework until the HTTP app is built; each router's routes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from starlette.testclient import TestClient

from bastion.serve import create_app
from bastion.serve.routes import ops, predict, v2

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_importing_bastion_serve_and_building_a_config_loads_no_web_framework() -> None:
    code = ("import sys; import bastion.serve; from bastion.serve import build_server, load_config, GuardedServer; "
            "load_config(None); web = [m for m in ('fastapi', 'starlette', 'uvicorn') if m in sys.modules]; "
            "from bastion.serve import create_app; print(web, 'fastapi' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] True", out


def test_the_app_serves_exactly_the_routers_routes(make_server) -> None:
    app = create_app(make_server())
    served = {(path, method.upper()) for path, methods in app.openapi()["paths"].items() for method in methods}
    from_routers = {(route.path, method) for r in (v2.router, predict.router, ops.router) for route in r.routes
                    for method in route.methods if method != "HEAD"}
    assert served == from_routers and ("/v2/models/{name}/infer", "POST") in served
    assert {("/predict", "POST"), ("/metrics", "GET"), ("/admin/recalibrate", "POST")} <= served
    with TestClient(app) as client:
        missing = client.get("/no/such/route")
        wrong = client.put("/metrics")
    assert missing.status_code == 404 and wrong.status_code == 405 and set(wrong.json()) == {"error"}
