"""docker-compose.yml: the server stack is complete and wired together (no Docker engine needed).

Parsed with the YAML loader (anchors and merge keys resolved like Compose does); where a Docker
engine answers, `docker compose config` validates the file too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SERVICES = {"postgres", "prefect-server", "worker-cpu", "worker-gpu", "redis", "minio"}
WORKERS = ("worker-cpu", "worker-gpu")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def prefect_file() -> dict:
    return yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _default(value: str) -> str:
    """`${VAR:-default}` -> default, as Compose resolves it when VAR is unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def _depends(service: dict) -> dict[str, dict]:
    deps = service.get("depends_on") or {}
    return {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps


def test_every_service_of_the_stack_is_there(services):
    assert SERVICES <= set(services), SERVICES - set(services)


def test_long_running_services_have_health_checks(services):
    for name, svc in services.items():
        if svc.get("restart") == "no":  # one-shot jobs finish instead
            continue
        hc = svc.get("healthcheck")
        assert hc and hc.get("test"), f"{name} has no healthcheck"
        assert hc.get("interval") and int(hc.get("retries", 0)) >= 3, f"{name}: healthcheck without interval/retries"


def test_dependencies_exist_and_wait_for_health(services):
    for name, svc in services.items():
        for dep, spec in _depends(svc).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            cond = spec.get("condition")
            assert cond in ("service_healthy", "service_completed_successfully"), f"{name} -> {dep}: {cond}"
            if cond == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep}'s health, which has no check"
            else:
                assert services[dep].get("restart") == "no", f"{dep} must be a one-shot job"
    assert _depends(services["prefect-server"])["postgres"]["condition"] == "service_healthy"
    for w in WORKERS:
        deps = _depends(services[w])
        assert {"prefect-server", "redis", "minio"} <= set(deps), f"{w}: {sorted(deps)}"


def test_prefect_server_uses_postgres_with_basic_auth(services):
    server, pg = services["prefect-server"], services["postgres"]
    env, pg_env = _env(server), _env(pg)
    url = _default(env["PREFECT_API_DATABASE_CONNECTION_URL"])
    m = re.fullmatch(r"postgresql\+asyncpg://([^:]+):([^@]+)@([^:/]+):5432/(\w+)", url)
    assert m, url
    assert m.groups() == (pg_env["POSTGRES_USER"], _default(pg_env["POSTGRES_PASSWORD"]), "postgres",
                          pg_env["POSTGRES_DB"])
    auth = _default(env["PREFECT_SERVER_API_AUTH_STRING"])
    assert re.fullmatch(r"[^:]+:.+", auth), "basic auth is user:password"
    assert "/api/health" in " ".join(server["healthcheck"]["test"])
    assert any(p.endswith(":4200") for p in server.get("ports", []))


def test_workers_reach_the_server_with_its_credentials(services, prefect_file):
    server_env = _env(services["prefect-server"])
    pools = {d["work_pool"]["name"] for d in prefect_file["deployments"]}
    train_pool = next(d["work_pool"]["name"] for d in prefect_file["deployments"] if d["name"] == "train")
    for w in WORKERS:
        env = _env(services[w])
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert _default(env["PREFECT_API_AUTH_STRING"]) == _default(server_env["PREFECT_SERVER_API_AUTH_STRING"])
        pool = re.search(r"--pool (\S+)", services[w]["command"]).group(1)
        assert pool in pools, f"{w} serves {pool}, which no deployment uses"
        assert "--with-healthcheck" in services[w]["command"]
    gpu_pool = re.search(r"--pool (\S+)", services["worker-gpu"]["command"]).group(1)
    assert gpu_pool == train_pool, "training must land on the GPU worker's pool"


def test_gpu_worker_uses_the_nvidia_runtime(services):
    gpu = services["worker-gpu"]
    assert gpu.get("runtime") == "nvidia"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert "runtime" not in services["worker-cpu"]


def test_data_root_is_the_object_store_with_its_credentials(services):
    minio_env = _env(services["minio"])
    for w in WORKERS:
        env = _env(services[w])
        assert _default(env["CRAWL2MODEL_DATA_ROOT"]).startswith("s3://")
        assert _default(env["AWS_ACCESS_KEY_ID"]) == _default(minio_env["MINIO_ROOT_USER"])
        assert _default(env["AWS_SECRET_ACCESS_KEY"]) == _default(minio_env["MINIO_ROOT_PASSWORD"])
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert "--appendonly yes" in services["redis"]["command"], "the dedup index must survive restarts"


def test_named_volumes_are_declared_and_used(compose, services):
    declared = set(compose.get("volumes") or {})
    used = set()
    for svc in services.values():
        for v in svc.get("volumes", []):
            src = v.split(":", 1)[0] if isinstance(v, str) else v.get("source")
            if src and not src.startswith((".", "/")):
                used.add(src)
    assert used == declared, (used, declared)
    for name in ("postgres", "redis", "minio"):
        assert services[name].get("volumes"), f"{name} keeps its data in a volume"


def test_worker_image_builds_from_this_repo(services):
    assert (REPO / "Dockerfile").is_file()
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "ARG TORCH_INDEX_URL" in dockerfile
    gpu_build = services["worker-gpu"]["build"]
    assert "cu" in gpu_build["args"]["TORCH_INDEX_URL"]


def test_the_build_context_leaves_out_what_the_image_does_not_copy():
    # Without .dockerignore, `docker compose up --build` sent .venv and bench/out (gigabytes) to the daemon.
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".prefect", "bench", "tests"} <= ignored
    copied = {line.split()[1] for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")}
    assert not copied & ignored, "the image copies something the build context leaves out"


def _docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_docker_compose_config_accepts_the_file():
    if not _docker_engine_answers():
        pytest.skip("no Docker engine answers here")
    proc = subprocess.run(["docker", "compose", "-f", str(REPO / "docker-compose.yml"), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
