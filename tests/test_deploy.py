"""Deployment artefacts: container, ECS, Kubernetes and Terraform stay consistent with each other and with
what the program does (`changeconsole provision`, the worker's command line, config.json).

No docker engine or terraform binary runs here: the Dockerfile is parsed, YAML/JSON are loaded, and the
Terraform is evaluated by tests/deploy/tfeval.py (python-hcl2 parses every .tf file).
"""

from __future__ import annotations

import base64
import fnmatch
import gzip
import importlib.util
import io
import json
import re
import shlex
import shutil
import stat
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import yaml

from changeconsole.config import parse_config_text
from changeconsole.models import BUILTIN_ROLES, Config, EventsConfig, OperatorAction
from changeconsole.services import provision
from deploy.tfeval import (
    REF_MARKER,
    ModuleInstance,
    ModuleSource,
    Plan,
    Ref,
    TfError,
    is_unknown,
    load_hcl,
    load_module,
    load_tfvars,
    plan_root,
    references,
)

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
TF = DEPLOY / "terraform"
K8S = DEPLOY / "k8s"
ECS = DEPLOY / "ecs"
ENVIRONMENTS = ("dev", "staging", "prod")
ALLOWED_OBJECT_PREFIXES = {"customers/", "archive/", "payloads/", "audit/"}


# -- helpers ---------------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


@cache
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions((ROOT / "Dockerfile").read_text())


def final_stage() -> list[tuple[str, str]]:
    instrs = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(instrs) if word == "FROM")
    return instrs[last_from:]


def one(instrs: list[tuple[str, str]], word: str) -> str:
    found = [args for w, args in instrs if w == word]
    assert len(found) == 1, f"expected one {word}, found {found}"
    return found[0]


def option_value(argv: list[str], flag: str) -> str:
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


def worker_argv() -> list[str]:
    return exec_form(one(final_stage(), "CMD"))


def drain_deadline() -> int:
    return int(option_value(worker_argv(), "--shutdown-timeout"))


def health_port() -> int:
    return int(option_value(worker_argv(), "--health-port"))


def healthz_url(python_code: str) -> tuple[str, int, str]:
    m = re.search(r"urllib\.request\.urlopen\('http://([\w.]+):(\d+)(/[\w/]*)'", python_code)
    assert m, f"health check does not call urllib.request.urlopen on a URL: {python_code}"
    return m.group(1), int(m.group(2)), m.group(3)


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in final_stage():
        if word == "ENV":
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                env[key] = value
    return env


@cache
def env_config(env: str) -> Config:
    path = TF / "environments" / env / "config.json"
    return parse_config_text(path.read_text(), path)


@cache
def env_plan(env: str) -> Plan:
    d = TF / "environments" / env
    return plan_root(d, d / "terraform.tfvars")


def ref_name(plan: Plan, value: Any) -> str:
    """The `name` of the resource instance an unknown ARN comes from."""
    return str(plan.resolve(value).args["name"])


def module_dirs() -> list[Path]:
    dirs = {p.parent for p in TF.rglob("*.tf") if ".terraform" not in p.parts}
    return sorted(dirs)


def ref_matches(expected: Any, actual: Any) -> bool:
    """Deep equality where an unknown Terraform value matches any string."""
    if isinstance(expected, Ref) or (isinstance(expected, str) and REF_MARKER.search(expected)):
        return isinstance(actual, str)
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(ref_matches(expected[k], actual[k]) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(ref_matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def policy_statements(plan: Plan, module_suffix: str, name: str) -> list[dict[str, Any]]:
    docs = [
        i
        for i in plan.instances("aws_iam_policy_document")
        if i.name == name and i.module.address.endswith(module_suffix)
    ]
    return [s for d in docs for s in d.args.get("statement", [])]


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@cache
def k8s_objects() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    objects: dict[str, dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        for doc in load_yaml_docs(K8S / resource):
            objects[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return objects


def deployment() -> dict[str, Any]:
    return k8s_objects()["Deployment/changeconsole-worker"]


def worker_container(dep: dict[str, Any]) -> dict[str, Any]:
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def ecs_task_definition() -> dict[str, Any]:
    return json.loads((ECS / "task-definition.json").read_text())


# -- container -------------------------------------------------------------------------------------------


def test_dockerfile_is_multistage_on_slim_python() -> None:
    froms = [args for word, args in dockerfile() if word == "FROM"]
    assert len(froms) >= 2, "build and runtime stages"
    for image in froms:
        assert re.match(r"python:\$\{PYTHON_VERSION\}-slim|python:3\.\d+-slim", image.split()[0]), image
    runtime = final_stage()
    assert any(w == "COPY" and args.startswith("--from=") for w, args in runtime), "runtime copies the build"
    assert not any(w == "RUN" and "pip install" in args for w, args in runtime), "no build tools at runtime"


def test_dockerfile_runs_as_non_root() -> None:
    user = one(final_stage(), "USER").split(":")[0]
    assert user not in ("", "0", "root")
    if user.isdigit():
        assert int(user) >= 1000


def test_healthcheck_calls_healthz_on_the_worker_health_port() -> None:
    args = one(final_stage(), "HEALTHCHECK")
    assert "curl" not in args and "wget" not in args, "slim images have neither"
    opts, _, cmd = args.partition("CMD")
    argv = exec_form(cmd.strip())
    assert argv[:2] == ["python", "-c"]
    host, port, path = healthz_url(argv[2])
    assert (host, port, path) == ("127.0.0.1", health_port(), "/healthz")
    timeout = int(re.search(r"--timeout=(\d+)s", opts).group(1))  # type: ignore[union-attr]
    urlopen_timeout = float(re.search(r"timeout=(\d+(?:\.\d+)?)\)", argv[2]).group(1))  # type: ignore[union-attr]
    assert urlopen_timeout < timeout, "the request must time out before docker kills the check"
    assert f"EXPOSE {health_port()}" in [f"{w} {a}" for w, a in final_stage()]


def test_stop_signal_and_grace_exceed_the_drain_deadline() -> None:
    runtime = final_stage()
    assert one(runtime, "STOPSIGNAL") == "SIGTERM"
    labels = " ".join(args for word, args in runtime if word == "LABEL")
    grace = int(re.search(r'io\.changeconsole\.stop-grace-seconds="(\d+)"', labels).group(1))  # type: ignore[union-attr]
    deadline = int(re.search(r'io\.changeconsole\.drain-deadline-seconds="(\d+)"', labels).group(1))  # type: ignore[union-attr]
    assert deadline == drain_deadline()
    assert grace > deadline


def test_worker_command() -> None:
    argv = worker_argv()
    assert argv[:2] == ["changeconsole", "worker"]
    assert health_port() == 8080
    assert drain_deadline() == 25
    entrypoint = exec_form(one(final_stage(), "ENTRYPOINT"))
    assert entrypoint == ["python", "/opt/changeconsole/entrypoint.py"]


def test_worker_cli_accepts_the_container_options() -> None:
    from changeconsole.cli import main

    worker = main.commands.get("worker")
    if worker is None:
        pytest.skip("the worker command is not in this build yet")
    options = {opt for param in worker.params for opt in getattr(param, "opts", [])}
    assert {"--health-port", "--shutdown-timeout"} <= options


def test_everything_writable_is_under_tmp() -> None:
    env = dockerfile_env()
    for key in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "TMPDIR"):
        assert env[key] == "/tmp" or env[key].startswith("/tmp/"), key
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["CHANGECONSOLE_CONFIG"].startswith("/etc/"), "the mounted config file is read-only"
    assert one(final_stage(), "VOLUME") == '["/tmp"]'


def _dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        candidates = [pat] if not pat.startswith("**/") else [pat, pat[3:]]
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(
            fnmatch.fnmatch(prefix, c) or fnmatch.fnmatch(prefix, "*/" + c.removeprefix("**/"))
            for c in candidates
            for prefix in prefixes
        )
        if hit:
            ignored = not negate
    return ignored


def test_dockerignore_keeps_every_copied_path_and_drops_the_rest() -> None:
    patterns = _dockerignore_patterns()
    sources = []
    for word, args in dockerfile():
        if word == "COPY" and not args.startswith("--from="):
            sources += args.split()[:-1]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not _ignored(src, patterns), f"{src} is copied but .dockerignore excludes it"
    for path in (".venv", ".git", "tests", "deploy/terraform", "src/changeconsole/__pycache__"):
        assert _ignored(path, patterns), f"{path} should not be in the build context"


# -- entrypoint ------------------------------------------------------------------------------------------


@cache
def entrypoint() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cc_entrypoint", DEPLOY / "docker" / "entrypoint.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_entrypoint_writes_inline_config_to_tmp(tmp_path: Path) -> None:
    text = (TF / "environments" / "dev" / "config.json").read_text()
    out = tmp_path / "cc" / "config.json"
    env = entrypoint().materialise({"CHANGECONSOLE_CONFIG_JSON": text, "CHANGECONSOLE_CONFIG_OUT": str(out)})
    assert "CHANGECONSOLE_CONFIG_JSON" not in env, "the config must not leak into the worker's environment"
    assert env["CHANGECONSOLE_CONFIG"] == str(out)
    assert json.loads(out.read_text()) == json.loads(text)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    parse_config_text(out.read_text(), out)


def test_entrypoint_accepts_gzip_base64(tmp_path: Path) -> None:
    text = (TF / "environments" / "prod" / "config.json").read_text()
    packed = base64.b64encode(gzip.compress(text.encode())).decode()
    out = tmp_path / "config.json"
    entrypoint().materialise({"CHANGECONSOLE_CONFIG_JSON": packed, "CHANGECONSOLE_CONFIG_OUT": str(out)})
    assert json.loads(out.read_text()) == json.loads(text)


def test_entrypoint_without_inline_config_changes_nothing(tmp_path: Path) -> None:
    env = {
        "CHANGECONSOLE_CONFIG": "/etc/changeconsole/config.json",
        "CHANGECONSOLE_CONFIG_OUT": str(tmp_path),
    }
    assert entrypoint().materialise(env) == env
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["not json", "{broken", base64.b64encode(gzip.compress(b"[1,")).decode()])
def test_entrypoint_rejects_a_bad_inline_config(bad: str, tmp_path: Path) -> None:
    ep = entrypoint()
    with pytest.raises(ep.EntrypointError):
        ep.materialise(
            {"CHANGECONSOLE_CONFIG_JSON": bad, "CHANGECONSOLE_CONFIG_OUT": str(tmp_path / "c.json")}
        )
    assert not (tmp_path / "c.json").exists()


def test_entrypoint_execs_the_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ep = entrypoint()
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(ep.os, "execvpe", lambda f, argv, env: calls.append((f, argv, env)))
    monkeypatch.setenv("CHANGECONSOLE_CONFIG_JSON", '{"a": 1}')
    monkeypatch.setenv("CHANGECONSOLE_CONFIG_OUT", str(tmp_path / "config.json"))
    assert ep.main(worker_argv()) == 0
    ((file, argv, env),) = calls
    assert file == "changeconsole" and argv == worker_argv()
    assert env["CHANGECONSOLE_CONFIG"] == str(tmp_path / "config.json")
    assert "CHANGECONSOLE_CONFIG_JSON" not in env
    monkeypatch.setenv("CHANGECONSOLE_CONFIG_JSON", "garbage")
    assert ep.main(worker_argv()) == 2
    assert ep.main([]) == 2


# -- Kubernetes ------------------------------------------------------------------------------------------


def test_kustomization_lists_existing_files() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    generated = {g["name"]: g for g in kustomization["configMapGenerator"]}
    for file in generated["changeconsole-config"]["files"]:
        assert (K8S / file).is_file()
    kinds = {key.split("/")[0] for key in k8s_objects()}
    assert {"Deployment", "ServiceAccount", "PodDisruptionBudget", "ScaledObject", "Namespace"} <= kinds
    assert kustomization["namespace"] == k8s_objects()["Namespace/changeconsole"]["metadata"]["name"]


def test_k8s_config_is_valid_and_is_the_prod_example() -> None:
    text = (K8S / "config.json").read_text()
    cfg = parse_config_text(text, K8S / "config.json")
    assert json.loads(text) == json.loads((TF / "environments" / "prod" / "config.json").read_text())
    container = worker_container(deployment())
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AWS_REGION"] == cfg.aws_region


def test_k8s_deployment_probes_and_command_match_the_image() -> None:
    container = worker_container(deployment())
    assert container["args"] == worker_argv()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
        assert port == health_port(), probe


def test_k8s_grace_period_exceeds_the_drain_deadline() -> None:
    spec = deployment()["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= drain_deadline() + 10


def test_k8s_pod_is_non_root_with_read_only_root_and_tmp_volume() -> None:
    dep = deployment()
    pod = dep["spec"]["template"]["spec"]
    container = worker_container(dep)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 1000
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = {e["name"]: e.get("value") for e in container["env"]}
    config_dir = str(Path(env["CHANGECONSOLE_CONFIG"]).parent)
    config_volume = volumes[mounts[config_dir]]
    assert config_volume["configMap"]["name"] == "changeconsole-config"
    assert {i["path"] for i in config_volume["configMap"]["items"]} == {
        Path(env["CHANGECONSOLE_CONFIG"]).name
    }
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]
    assert "replicas" not in dep["spec"], "KEDA owns the replica count"


def test_k8s_service_account_uses_the_terraform_worker_role() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    sa = k8s_objects()[f"ServiceAccount/{pod['serviceAccountName']}"]
    role_arn = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    plan = env_plan("prod")
    role = next(i for i in plan.instances("aws_iam_role", "worker"))
    central_account = load_tfvars(TF / "environments" / "prod" / "terraform.tfvars")["central_account_id"]
    assert role_arn == f"arn:aws:iam::{central_account}:role/{role.args['name']}"
    trust = policy_statements(plan, "module.worker_iam.", "trust")
    eks = next(s for s in trust if s["sid"] == "EksServiceAccount")
    subjects = [c["values"] for c in eks["condition"] if c["variable"].endswith(":sub")]
    namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    assert subjects == [[f"system:serviceaccount:{namespace}:{sa['metadata']['name']}"]]


def test_k8s_scaling_and_disruption_budget() -> None:
    objs = k8s_objects()
    dep = deployment()
    labels = dep["spec"]["template"]["metadata"]["labels"]
    pdb = objs["PodDisruptionBudget/changeconsole-worker"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    scaled = objs["ScaledObject/changeconsole-worker"]["spec"]
    assert scaled["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "changeconsole-worker",
    }
    assert scaled["minReplicaCount"] >= 2 > pdb["spec"]["maxUnavailable"]
    assert scaled["maxReplicaCount"] > scaled["minReplicaCount"]
    (trigger,) = scaled["triggers"]
    auth = objs[f"TriggerAuthentication/{trigger['authenticationRef']['name']}"]
    assert auth["spec"]["podIdentity"]["provider"] == "aws"
    meta = trigger["metadata"]
    publisher = [m for m in env_plan("prod").root.walk() if m.address.endswith("module.backlog_publisher.")]
    expected = publisher[0].output("metric")
    assert trigger["type"] == "aws-cloudwatch"
    assert (meta["namespace"], meta["metricName"]) == (expected["namespace"], expected["name"])
    assert {meta["dimensionName"]: meta["dimensionValue"]} == expected["dimensions"]
    assert meta["awsRegion"] == env_config("prod").aws_region
    assert float(meta["targetMetricValue"]) > 0


# -- ECS -------------------------------------------------------------------------------------------------


def test_ecs_task_definition_keeps_the_container_contract() -> None:
    td = ecs_task_definition()
    assert td["requiresCompatibilities"] == ["FARGATE"] and td["networkMode"] == "awsvpc"
    (container,) = td["containerDefinitions"]
    assert container["command"] == worker_argv()
    assert container["stopTimeout"] > drain_deadline()
    assert container["stopTimeout"] <= 120, "Fargate maximum"
    assert container["readonlyRootFilesystem"] is True
    assert container["user"].split(":")[0] not in ("0", "root")
    volumes = {v["name"] for v in td["volumes"]}
    tmp = [m for m in container["mountPoints"] if m["containerPath"] == "/tmp"]
    assert tmp and tmp[0]["sourceVolume"] in volumes and tmp[0]["readOnly"] is False
    hc = container["healthCheck"]["command"]
    assert hc[:3] == ["CMD", "python", "-c"]
    assert healthz_url(hc[3]) == ("127.0.0.1", health_port(), "/healthz")
    assert {p["containerPort"] for p in container["portMappings"]} == {health_port()}
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert re.match(r"arn:aws:ssm:[\w-]+:\d{12}:parameter/", secrets["CHANGECONSOLE_CONFIG_JSON"])
    plain = {e["name"] for e in container["environment"]}
    assert "CHANGECONSOLE_CONFIG_JSON" not in plain and not any(
        "SECRET" in n or "PASSWORD" in n for n in plain
    )
    assert dict((e["name"], e["value"]) for e in container["environment"])[
        "CHANGECONSOLE_CONFIG_OUT"
    ].startswith("/tmp/")


def test_ecs_json_matches_the_terraform_module() -> None:
    plan = env_plan("prod")
    (td,) = plan.instances("aws_ecs_task_definition")
    rendered = json.loads(td.args["container_definitions"])
    assert ref_matches(rendered, ecs_task_definition()["containerDefinitions"])
    assert td.args["family"] == ecs_task_definition()["family"]
    (policy,) = plan.instances("aws_appautoscaling_policy")
    tt = policy.args["target_tracking_scaling_policy_configuration"][0]
    js = json.loads((ECS / "scaling-policy.json").read_text())["TargetTrackingScalingPolicyConfiguration"]
    assert tt["target_value"] == js["TargetValue"]
    tf_metrics = {
        m["id"]: (
            m.get("expression"),
            m.get("metric_stat", [{}])[0].get("metric", [{}])[0].get("metric_name"),
        )
        for m in tt["customized_metric_specification"][0]["metrics"]
    }
    js_metrics = {
        m["Id"]: (m.get("Expression"), m.get("MetricStat", {}).get("Metric", {}).get("MetricName"))
        for m in js["CustomizedMetricSpecification"]["Metrics"]
    }
    assert tf_metrics == js_metrics
    assert tf_metrics["backlog"][1] == "QueueBacklog" and tf_metrics["tasks"][1] == "RunningTaskCount"
    target = json.loads((ECS / "scalable-target.json").read_text())
    (tf_target,) = plan.instances("aws_appautoscaling_target")
    assert (tf_target.args["min_capacity"], tf_target.args["max_capacity"]) == (
        target["MinCapacity"],
        target["MaxCapacity"],
    )
    assert target["ResourceId"] == tf_target.args["resource_id"] == js_scaling_resource()


def js_scaling_resource() -> str:
    service = json.loads((ECS / "service.json").read_text())
    assert service["launchType"] == "FARGATE"
    assert service["deploymentConfiguration"]["deploymentCircuitBreaker"] == {
        "enable": True,
        "rollback": True,
    }
    assert service["taskDefinition"] == ecs_task_definition()["family"]
    return f"service/{service['cluster']}/{service['serviceName']}"


# -- Terraform: syntax and references ----------------------------------------------------------------------


def test_every_terraform_file_parses() -> None:
    files = [p for p in TF.rglob("*") if p.suffix in (".tf", ".tfvars") or p.name.endswith(".tfvars.example")]
    assert len(files) > 20
    for path in files:
        assert isinstance(load_hcl(path), dict), path


def _traversals(src: ModuleSource) -> Iterator[tuple[str, tuple[Any, ...]]]:
    blocks: list[Any] = [
        *src.variables.values(),
        *src.locals.values(),
        *src.resources.values(),
        *src.data.values(),
        *src.modules.values(),
        *src.outputs.values(),
    ]
    for block in blocks:
        for node in references(block):
            if node[0] == "trav" and node[1][0] == "name":
                yield node[1][1], node[2]


@pytest.mark.parametrize("module_dir", module_dirs(), ids=lambda p: str(p.relative_to(TF)))
def test_module_references_are_declared(module_dir: Path) -> None:
    src = ModuleSource.load(module_dir)
    for name in src.modules:
        src.module_source_path(name)  # raises if the source directory does not exist
    for root, steps in _traversals(src):
        if not steps or steps[0][0] != "attr":
            continue
        first = steps[0][1]
        if root == "var":
            assert first in src.variables, f"{module_dir}: var.{first} is not declared"
        elif root == "local":
            assert first in src.locals, f"{module_dir}: local.{first} is not declared"
        elif root == "module":
            assert first in src.modules, f"{module_dir}: module.{first} is not declared"
            child = load_module(src.module_source_path(first))
            rest = [s for s in steps[1:] if s[0] == "attr"]
            if rest:
                assert rest[0][1] in child.outputs, f"{module_dir}: module.{first}.{rest[0][1]} is no output"
    for name, call in src.modules.items():
        child = load_module(src.module_source_path(name))
        args = set(call) - {"source", "version", "for_each", "count", "depends_on", "providers"}
        assert args <= set(child.variables), (
            f"{module_dir}: module {name} sets undeclared {args - set(child.variables)}"
        )
        required = {v for v, spec in child.variables.items() if "default" not in spec}
        assert required <= args, f"{module_dir}: module {name} misses {required - args}"


def test_example_environments_use_s3_state_with_dynamodb_locking() -> None:
    for env in ENVIRONMENTS:
        doc = load_hcl(TF / "environments" / env / "main.tf")
        (terraform,) = doc["terraform"]
        (backend,) = terraform["backend"]
        s3 = backend["s3"]
        assert s3["key"] == f"changeconsole/{env}/terraform.tfstate"
        assert s3["dynamodb_table"] and s3["encrypt"] is True and s3["bucket"]
        tfvars = load_tfvars(TF / "environments" / env / "terraform.tfvars")
        (provider,) = doc["provider"]
        assert provider["aws"]["allowed_account_ids"] == ["${var.central_account_id}"]
        assert tfvars["central_account_id"] in s3["bucket"], "state lives in the environment's own account"


# -- Terraform: the example environments evaluate, and match config.json -----------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_plans(env: str) -> None:
    plan = env_plan(env)
    assert plan.instances("aws_sqs_queue")
    assert set(plan.outputs) >= {"worker_role_arn", "config_customer_mappings", "queue_names", "dlq_names"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_tfvars_customers_match_config(env: str) -> None:
    cfg = env_config(env)
    tfvars = load_tfvars(TF / "environments" / env / "terraform.tfvars")
    assert sorted(tfvars["customers"]) == sorted(cfg.customer_mappings)
    assert tfvars["bucket_name"] == cfg.s3_config.bucket_name
    assert tfvars["aws_region"] == cfg.aws_region
    assert tfvars.get("transport", "s3-events") == cfg.transport
    assert tfvars.get("max_receive_count", 3) == cfg.max_receive_count
    for mapping in cfg.customer_mappings.values():
        assert (mapping.queue_region, mapping.queue_account) == (
            tfvars["aws_region"],
            tfvars["central_account_id"],
        )


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_terraform_config_mappings_output_is_config_json(env: str) -> None:
    plan = env_plan(env)
    cfg = env_config(env)
    mappings = plan.outputs["config_customer_mappings"]
    assert sorted(mappings) == sorted(cfg.customer_mappings)
    for code, derived in mappings.items():
        expected = cfg.customer_mappings[code].model_dump(mode="json", exclude_none=True)
        queue_arn = derived.pop("sqs_queue_arn")
        assert ref_name(plan, queue_arn) == cfg.customer_mappings[code].queue_name
        expected.pop("sqs_queue_arn")
        assert derived == expected, code


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_provision_and_terraform_describe_the_same_resources(env: str) -> None:
    problems = parity_problems(env_config(env), env_plan(env))
    assert problems == []


def parity_problems(cfg: Config, plan: Plan) -> list[str]:
    """Every difference between `changeconsole provision`'s plan and what the Terraform declares."""
    want = provision.plan(cfg)
    problems: list[str] = []

    def check(what: str, expected: Any, actual: Any) -> None:
        if expected != actual:
            problems.append(f"{what}: provision {expected!r}, terraform {actual!r}")

    queues = {i.key: i for i in plan.instances("aws_sqs_queue", "queue")}
    dlqs = {i.key: i for i in plan.instances("aws_sqs_queue", "dlq")}
    check("customers with a queue", sorted(q.customer for q in want.queues), sorted(queues))
    check("customers with a DLQ", sorted(q.customer for q in want.queues), sorted(dlqs))
    for spec in want.queues:
        queue, dlq = queues.get(spec.customer), dlqs.get(spec.customer)
        if queue is None or dlq is None:
            continue
        q, d = queue.args, dlq.args
        check(f"{spec.customer} queue name", spec.name, q["name"])
        check(f"{spec.customer} DLQ name", spec.dlq_name, d["name"])
        attrs = spec.attributes
        check(f"{spec.customer} visibility", int(attrs["VisibilityTimeout"]), q["visibility_timeout_seconds"])
        check(
            f"{spec.customer} retention", int(attrs["MessageRetentionPeriod"]), q["message_retention_seconds"]
        )
        check(
            f"{spec.customer} wait",
            int(attrs["ReceiveMessageWaitTimeSeconds"]),
            q["receive_wait_time_seconds"],
        )
        check(f"{spec.customer} SSE", attrs["SqsManagedSseEnabled"] == "true", q["sqs_managed_sse_enabled"])
        redrive_want = json.loads(attrs["RedrivePolicy"])
        redrive = json.loads(q["redrive_policy"])
        check(f"{spec.customer} maxReceiveCount", redrive_want["maxReceiveCount"], redrive["maxReceiveCount"])
        check(
            f"{spec.customer} redrive target", spec.dlq_name, ref_name(plan, redrive["deadLetterTargetArn"])
        )
        dattrs = spec.dlq_attributes
        check(
            f"{spec.customer} DLQ retention",
            int(dattrs["MessageRetentionPeriod"]),
            d["message_retention_seconds"],
        )
        check(
            f"{spec.customer} DLQ SSE", dattrs["SqsManagedSseEnabled"] == "true", d["sqs_managed_sse_enabled"]
        )

    doorbells = plan.instances("aws_sqs_queue", "doorbell")
    check("doorbell queues", sorted(want.doorbells), sorted(q.args["name"] for q in doorbells))
    for q in doorbells:
        attrs = {
            "MessageRetentionPeriod": str(q.args["message_retention_seconds"]),
            "VisibilityTimeout": str(q.args["visibility_timeout_seconds"]),
            "ReceiveMessageWaitTimeSeconds": str(q.args["receive_wait_time_seconds"]),
            "SqsManagedSseEnabled": str(q.args["sqs_managed_sse_enabled"]).lower(),
        }
        check(f"doorbell {q.args['name']} attributes", provision.doorbell_attributes(), attrs)

    buckets = plan.instances("aws_s3_bucket")
    check("bucket", [want.bucket], [b.args["bucket"] for b in buckets])
    notifications = plan.instances("aws_s3_bucket_notification")
    tf_notes = {}
    for note in notifications:
        for q in note.args.get("queue", []):
            tf_notes[q["id"]] = (
                ref_name(plan, q["queue_arn"]),
                q["filter_prefix"],
                q["filter_suffix"],
                sorted(q["events"]),
            )
    want_notes = {
        n.id: (cfg.customer_mappings[n.customer].queue_name, n.prefix, n.suffix, sorted(n.events))
        for n in want.notifications
    }
    check("notifications", want_notes, tf_notes)
    if want.notifications:
        bucket_ref = buckets[0].attr("arn")  # a Ref: the ARN is known after apply
        policies = {
            ref_name(plan, pol.args["statement"][0]["resources"][0]): pol.args["statement"]
            for pol in plan.instances("aws_iam_policy_document", "queue")
        }
        applied = {
            doc.key
            for p in plan.instances("aws_sqs_queue_policy")
            if (doc := plan.resolve(p.args["policy"])).name == "queue"
        }
        check("queue policies", sorted(n.customer for n in want.notifications), sorted(applied))
        for n in want.notifications:
            statements = policies.get(cfg.customer_mappings[n.customer].queue_name)
            expected = [
                {
                    "sid": "AllowS3Triggers",
                    "effect": "Allow",
                    "actions": ["sqs:SendMessage"],
                    "principals": [{"type": "Service", "identifiers": ["s3.amazonaws.com"]}],
                    "condition": [{"test": "ArnLike", "variable": "aws:SourceArn", "values": [bucket_ref]}],
                }
            ]
            actual = [{k: v for k, v in s.items() if k != "resources"} for s in statements or []]
            check(f"{n.customer} queue policy", expected, actual)

    tables = {t.args["name"]: t.args for t in plan.instances("aws_dynamodb_table")}
    check("tables", sorted(t.name for t in want.tables), sorted(tables))
    for spec in want.tables:
        table = tables.get(spec.name)
        if table is None:
            continue
        definition = provision.table_definition(spec)
        check(f"{spec.name} billing", definition["BillingMode"], table["billing_mode"])
        keys = {k["KeyType"]: k["AttributeName"] for k in definition["KeySchema"]}
        check(f"{spec.name} keys", (keys["HASH"], keys["RANGE"]), (table["hash_key"], table["range_key"]))
        check(
            f"{spec.name} attributes",
            sorted((a["AttributeName"], a["AttributeType"]) for a in definition["AttributeDefinitions"]),
            sorted((a["name"], a["type"]) for a in table["attribute"]),
        )
        gsis = {
            g["IndexName"]: (g["KeySchema"][0]["AttributeName"], g["KeySchema"][1]["AttributeName"], "ALL")
            for g in definition.get("GlobalSecondaryIndexes", [])
        }
        tf_gsis = {
            g["name"]: (g["hash_key"], g["range_key"], g["projection_type"])
            for g in table.get("global_secondary_index", [])
        }
        check(f"{spec.name} GSIs", gsis, tf_gsis)
        ttl = [t["attribute_name"] for t in table.get("ttl", []) if t["enabled"]]
        check(f"{spec.name} TTL", [spec.ttl_attribute] if spec.ttl_attribute else [], ttl)
        check(f"{spec.name} PITR", [True], [p["enabled"] for p in table["point_in_time_recovery"]])

    (lifecycle,) = plan.instances("aws_s3_bucket_lifecycle_configuration")
    rules = {r["id"]: r for r in lifecycle.args["rule"]}
    audit = rules.get(provision.AUDIT_RULE_ID)
    tf_rule = None
    if audit is not None:
        tf_rule = {
            "ID": audit["id"],
            "Filter": {"Prefix": audit["filter"][0]["prefix"]},
            "Status": audit["status"],
        }
        if audit.get("transition"):
            tf_rule["Transitions"] = [
                {"Days": t["days"], "StorageClass": t["storage_class"]} for t in audit["transition"]
            ]
        if audit.get("expiration"):
            tf_rule["Expiration"] = {"Days": audit["expiration"][0]["days"]}
    check("audit lifecycle rule", want.audit.rule, tf_rule)
    locks = plan.instances("aws_s3_bucket_object_lock_configuration")
    check("audit object lock", want.audit.object_lock, bool(locks))
    check(
        "object lock without default retention",
        [],
        [lock.args.get("rule") for lock in locks if lock.args.get("rule")],
    )
    return problems


def operator_access_module(plan: Plan) -> ModuleInstance | None:
    found = [m for m in plan.root.walk() if m.address.endswith("module.operator_access[0].")]
    return found[0] if found else None


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_operator_roles_are_the_same_in_terraform_and_config(env: str) -> None:
    """The app's role matrix (config.json operator_roles) and the permission sets say the same thing:
    the same roles, each permission set named among its role's principals, the same actions, the same
    customer scope, the same Identity Center instance."""
    cfg = env_config(env)
    access = load_tfvars(TF / "environments" / env / "terraform.tfvars").get("operator_access")
    module = operator_access_module(env_plan(env))
    if not cfg.operator_roles:
        assert access is None and module is None
        return
    assert access is not None and module is not None
    assert sorted(access["roles"]) == sorted(cfg.operator_roles)
    planned = module.output("role_actions")
    for name, role in cfg.operator_roles.items():
        tf = access["roles"][name]
        assert (
            tf["permission_set"] in role.principals
            or f"permission-set:{tf['permission_set']}" in role.principals
        )
        assert sorted(planned[name]) == sorted(a.value for a in role.effective_actions(name)), name
        assert (tf.get("customers"), tf.get("customer_tag")) == (role.customers, role.customer_tag), name
    assert cfg.identity_center is not None
    assert (access["instance_arn"], access["identity_store_id"]) == (
        cfg.identity_center.instance_arn,
        cfg.identity_center.identity_store_id,
    )
    assert access.get("abac_attributes", {}) == cfg.identity_center.attributes


def test_operator_access_module_knows_the_apps_built_in_roles() -> None:
    inputs = {
        "name": "x",
        "instance_arn": "arn:aws:sso:::instance/ssoins-0000000000000000",
        "identity_store_id": "d-0000000000",
        "account_id": "111111111111",
        "region": "eu-west-1",
        "bucket_arn": "arn:aws:s3:::b",
        "status_table_arn": "arn:aws:dynamodb:eu-west-1:111111111111:table/s",
        "ledger_table_arn": "arn:aws:dynamodb:eu-west-1:111111111111:table/l",
        "customer_roles": {},
        "roles": {name: {"permission_set": f"x-{name}"} for name in BUILTIN_ROLES},
    }
    module = ModuleInstance(load_module(TF / "modules" / "operator_access"), inputs, "", TF)
    module.plan()
    assert {k: sorted(v) for k, v in module.local("builtin_actions").items()} == {
        name: sorted(a.value for a in actions) for name, actions in BUILTIN_ROLES.items()
    }
    assert set(module.local("needs")) and all(
        a in {x.value for x in OperatorAction} for acts in module.local("needs").values() for a in acts
    )
    too_long = {**inputs, "roles": {"Auditors": {"permission_set": "p" * 33}}}
    with pytest.raises(TfError, match="1-32 characters"):
        ModuleInstance(load_module(TF / "modules" / "operator_access"), too_long, "", TF)
    both = {**inputs, "roles": {"Auditors": {"permission_set": "a", "customers": ["x"], "customer_tag": "t"}}}
    with pytest.raises(TfError, match="not both"):
        ModuleInstance(load_module(TF / "modules" / "operator_access"), both, "", TF)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_ses_events_topic_queue_and_policies_match_provision(env: str) -> None:
    """The central SES events wiring Terraform declares is what `provision` creates (Provisioner.events)."""
    cfg, plan = env_config(env), env_plan(env)
    (topic,) = plan.instances("aws_sns_topic", "events")
    (queue,) = plan.instances("aws_sqs_queue", "events")
    assert topic.args["name"] == cfg.events.topic_name
    assert queue.args["name"] == cfg.events.queue_name
    assert queue.args["message_retention_seconds"] == provision.EVENTS_RETENTION
    assert queue.args["receive_wait_time_seconds"] == provision.LONG_POLL_SECONDS
    assert queue.args["sqs_managed_sse_enabled"] is True
    (sub,) = plan.instances("aws_sns_topic_subscription", "events")
    assert sub.args["protocol"] == "sqs"
    assert plan.resolve(sub.args["endpoint"]).name == "events"
    (topic_doc,) = plan.instances("aws_iam_policy_document", "topic")
    (statement,) = topic_doc.args["statement"]
    assert statement["actions"] == ["SNS:Publish"]
    assert statement["principals"] == [{"type": "Service", "identifiers": ["ses.amazonaws.com"]}]
    (cond,) = statement["condition"]
    assert cond["variable"] == "AWS:SourceAccount"
    assert sorted(cond["values"]) == sorted({m.account_id for m in cfg.customer_mappings.values()})
    (queue_doc,) = plan.instances("aws_iam_policy_document", "events_queue")
    (qs,) = queue_doc.args["statement"]
    assert qs["actions"] == ["sqs:SendMessage"]
    assert qs["principals"] == [{"type": "Service", "identifiers": ["sns.amazonaws.com"]}]


def test_customer_account_creates_the_configuration_set_with_every_event_type() -> None:
    module = load_module(TF / "customer-account")
    inputs = {
        "account_id": "210000000001",
        "worker_role_arn": "arn:aws:iam::333333333333:role/changeconsole-prod-worker",
        "external_id": "cc-prod-acme-d2a8f61500",
        "ses_identity": "notices.acme.example.com",
        "ses_region": "us-east-1",
        "events_topic_arn": "arn:aws:sns:us-east-1:333333333333:changeconsole-ses-events",
    }
    plan = ModuleInstance(module, inputs, "", TF).plan()
    (cs,) = plan.instances("aws_sesv2_configuration_set")
    assert cs.args["configuration_set_name"] == EventsConfig().configuration_set
    (dest,) = plan.instances("aws_sesv2_configuration_set_event_destination")
    (ed,) = dest.args["event_destination"]
    assert sorted(ed["matching_event_types"]) == sorted(provision.SES_EVENT_TYPES)
    assert ed["sns_destination"] == [{"topic_arn": inputs["events_topic_arn"]}]


def _drifted_copy(tmp_path: Path, rel: str, old: str, new: str) -> Path:
    copy = tmp_path / "terraform"
    shutil.copytree(TF, copy)
    target = copy / rel
    text = target.read_text()
    assert old in text, f"{old!r} not in {rel}"
    target.write_text(text.replace(old, new, 1))
    return copy / "environments" / "dev"


@pytest.mark.parametrize(
    ("rel", "old", "new", "expect"),
    [
        ("modules/customer_queues/variables.tf", "default     = 120", "default     = 60", "visibility"),
        (
            "modules/customer_queues/main.tf",
            "${var.name_prefix}${each.key}${var.dlq_suffix}",
            "${each.key}-dead",
            "DLQ",
        ),
        (
            "modules/metadata_bucket/variables.tf",
            'default     = ".json"',
            'default     = ".jsn"',
            "notifications",
        ),
        ("modules/tables/variables.tf", 'default     = "expires_at"', 'default     = "ttl"', "TTL"),
        ("modules/tables/variables.tf", '["gsi1", "gsi2", "gsi3"]', '["gsi1", "gsi2"]', "GSIs"),
        ("environments/dev/terraform.tfvars", "expire_days     = 400", "expire_days     = 366", "audit"),
        ("modules/metadata_bucket/main.tf", 'prefix = "audit/"', 'prefix = "audit"', "audit lifecycle"),
        (
            "environments/dev/terraform.tfvars",
            "max_receive_count  = 3",
            "max_receive_count  = 5",
            "maxReceive",
        ),
    ],
)
def test_parity_check_catches_drift(tmp_path: Path, rel: str, old: str, new: str, expect: str) -> None:
    env_dir = _drifted_copy(tmp_path, rel, old, new)
    plan = plan_root(env_dir, env_dir / "terraform.tfvars", cache=False)
    problems = parity_problems(env_config("dev"), plan)
    assert any(expect in p for p in problems), problems


def test_sqs_direct_transport_has_no_notifications_on_either_side(tmp_path: Path) -> None:
    env_dir = _drifted_copy(
        tmp_path,
        "environments/dev/terraform.tfvars",
        'transport          = "s3-events"',
        'transport = "sqs-direct"',
    )
    plan = plan_root(env_dir, env_dir / "terraform.tfvars", cache=False)
    cfg = env_config("dev").model_copy(update={"transport": "sqs-direct"})
    assert provision.plan(cfg).notifications == []
    assert plan.instances("aws_s3_bucket_notification") == []
    # only the SES events queue's policy (its topic sends to it) is left
    assert [p.address for p in plan.instances("aws_sqs_queue_policy")] == [
        "module.changeconsole.module.ses_events.aws_sqs_queue_policy.events"
    ]
    assert parity_problems(cfg, plan) == []
    assert parity_problems(env_config("dev"), plan), "s3-events config vs sqs-direct Terraform must differ"
    assert [q.args["name"] for q in plan.instances("aws_sqs_queue", "doorbell")] == provision.plan(
        cfg
    ).doorbells
    assert provision.plan(cfg).doorbells == [
        f"changeconsole-doorbell-{k}-of-{cfg.worker_shards}" for k in range(cfg.worker_shards)
    ]
    other = cfg.model_copy(update={"worker_shards": cfg.worker_shards + 1})
    assert any("doorbell queues" in p for p in parity_problems(other, plan)), "a shard count drift must show"


def test_evaluator_rejects_undeclared_references_and_inputs(tmp_path: Path) -> None:
    env_dir = _drifted_copy(tmp_path, "modules/stack/main.tf", "var.max_receive_count", "var.max_receive_cnt")
    with pytest.raises(TfError, match="max_receive_cnt"):
        plan_root(env_dir, env_dir / "terraform.tfvars", cache=False)
    env_dir = _drifted_copy(tmp_path / "b", "modules/stack/main.tf", "c.queue_name", "c.queue_nme")
    with pytest.raises(TfError, match="queue_nme"):
        plan_root(env_dir, env_dir / "terraform.tfvars", cache=False)
    env_dir = _drifted_copy(tmp_path / "c", "environments/dev/terraform.tfvars", '"acme" = {', '"Acme!" = {')
    with pytest.raises(TfError, match="a-z0-9"):
        plan_root(env_dir, env_dir / "terraform.tfvars", cache=False)


# -- Terraform: IAM ----------------------------------------------------------------------------------------


def _arn_prefix_objects(resources: list[str], bucket_ref: str) -> set[str]:
    prefixes = set()
    for resource in resources:
        assert resource.startswith(bucket_ref + "/"), resource
        rest = resource[len(bucket_ref) + 1 :]
        assert rest.endswith("/*") and rest.count("/") == 1, resource
        prefixes.add(rest[:-1])
    return prefixes


def test_worker_role_is_least_privilege() -> None:
    plan = env_plan("prod")
    cfg = env_config("prod")
    statements = policy_statements(plan, "module.worker_iam.", "worker")
    bucket_arn = plan.instances("aws_s3_bucket")[0].attr("arn")
    bucket_ref = str(bucket_arn)
    by_sid = {s["sid"]: s for s in statements}
    for s in statements:
        assert s["effect"] == ("Deny" if s["sid"] == "NeverConsumeDeadLetterQueues" else "Allow")
        for action in s["actions"]:
            assert "*" not in action, action
    object_prefixes: set[str] = set()
    for s in statements:
        if any(a.startswith("s3:") and a != "s3:ListBucket" for a in s["actions"]):
            object_prefixes |= _arn_prefix_objects(s["resources"], bucket_ref)
    assert object_prefixes == ALLOWED_OBJECT_PREFIXES
    assert _arn_prefix_objects(by_sid["WriteAudit"]["resources"], bucket_ref) == {"audit/"}
    assert _arn_prefix_objects(by_sid["DeleteDeliveredTriggers"]["resources"], bucket_ref) == {
        "customers/",
        "payloads/",
    }
    assert by_sid["ListBucket"]["resources"] == [bucket_arn]
    (queue_pattern,) = by_sid["ConsumeCustomerQueues"]["resources"]
    assert by_sid["RequeueAndDeadLetter"]["resources"] == [queue_pattern]
    (dlq_pattern,) = by_sid["NeverConsumeDeadLetterQueues"]["resources"]
    assert set(by_sid["NeverConsumeDeadLetterQueues"]["actions"]) == set(
        by_sid["ConsumeCustomerQueues"]["actions"]
    )
    for mapping in cfg.customer_mappings.values():
        assert fnmatch.fnmatchcase(mapping.sqs_queue_arn, queue_pattern)
        assert fnmatch.fnmatchcase(mapping.effective_dlq_arn, queue_pattern)
        assert fnmatch.fnmatchcase(mapping.effective_dlq_arn, dlq_pattern)
        assert not fnmatch.fnmatchcase(mapping.sqs_queue_arn, dlq_pattern)
    assert not fnmatch.fnmatchcase("arn:aws:sqs:eu-west-1:333333333333:other-queue", queue_pattern)
    assert not fnmatch.fnmatchcase("arn:aws:sqs:eu-west-1:999999999999:changeconsole-acme", queue_pattern)
    tables = {t.args["name"]: str(t.attr("arn")) for t in plan.instances("aws_dynamodb_table")}
    assert {str(r) for r in by_sid["StatusAndLedger"]["resources"]} == {
        r for arn in tables.values() for r in (arn, f"{arn}/index/*")
    }
    assert set(tables) == {cfg.status_table_name, cfg.ledger_table_name}
    metrics = by_sid["EmfMetrics"]
    assert metrics["actions"] == ["cloudwatch:PutMetricData"]
    assert metrics["condition"] == [
        {"test": "StringEquals", "variable": "cloudwatch:namespace", "values": [cfg.metrics.namespace]}
    ]
    assume = [s for s in policy_statements(plan, "module.worker_iam.", "assume_ses")]
    assert all(s["actions"] == ["sts:AssumeRole"] for s in assume)
    assert sorted(r for s in assume for r in s["resources"]) == sorted(
        m.ses_role_arn for m in cfg.customer_mappings.values()
    )
    assert not any("sts:AssumeRole" in s["actions"] for s in statements), "only the SES roles"
    attached = plan.instances("aws_iam_role_policy_attachment", "assume_ses")
    assert len(attached) == len(plan.instances("aws_iam_policy", "assume_ses")) >= 1


def test_worker_ses_role_list_is_split_under_the_policy_size_limit() -> None:
    src = load_module(TF / "modules" / "worker_iam")
    roles = [f"arn:aws:iam::{210000000000 + i:012d}:role/changeconsole-ses-sender" for i in range(1000)]
    module = ModuleInstance(
        src,
        {
            "role_name": "w",
            "bucket_arn": "arn:aws:s3:::b",
            "queue_arn_pattern": "arn:aws:sqs:eu-west-1:111111111111:changeconsole-*",
            "dlq_arn_pattern": "arn:aws:sqs:eu-west-1:111111111111:changeconsole-*-dlq",
            "table_arns": ["arn:aws:dynamodb:eu-west-1:111111111111:table/t"],
            "ses_role_arns": roles,
            "events_queue_arn": "arn:aws:sqs:eu-west-1:111111111111:changeconsole-ses-events",
        },
        "",
        TF,
    )
    plan = module.plan()
    docs = plan.instances("aws_iam_policy_document", "assume_ses")
    assert sorted(r for d in docs for s in d.args["statement"] for r in s["resources"]) == sorted(roles)
    for d in docs:
        size = len(
            json.dumps({"Version": "2012-10-17", "Statement": d.args["statement"]}, separators=(",", ":"))
        )
        assert size < 6144, size
    assert len(docs) <= 20, "IAM attaches at most 20 managed policies to a role"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_worker_role_always_has_a_principal(env: str) -> None:
    trust = policy_statements(env_plan(env), "module.worker_iam.", "trust")
    assert trust, "an empty trust policy cannot be applied"
    tfvars = load_tfvars(TF / "environments" / env / "terraform.tfvars")
    sids = {s["sid"] for s in trust}
    assert ("EcsTasks" in sids) == ("ecs" in tfvars or not tfvars.get("eks_oidc_provider_arn"))
    assert ("EksServiceAccount" in sids) == bool(tfvars.get("eks_oidc_provider_arn"))


def test_worker_role_without_any_principal_is_refused() -> None:
    inputs = {
        "role_name": "w",
        "bucket_arn": "arn:aws:s3:::b",
        "queue_arn_pattern": "arn:aws:sqs:eu-west-1:111111111111:changeconsole-*",
        "dlq_arn_pattern": "arn:aws:sqs:eu-west-1:111111111111:changeconsole-*-dlq",
        "table_arns": [],
        "ses_role_arns": [],
        "events_queue_arn": "arn:aws:sqs:eu-west-1:111111111111:changeconsole-ses-events",
        "trust_ecs_tasks": False,
    }
    with pytest.raises(TfError, match="needs a principal"):
        ModuleInstance(load_module(TF / "modules" / "worker_iam"), inputs, "", TF).plan()


def test_customer_ses_role_trusts_only_the_worker_with_external_id() -> None:
    root = TF / "customer-account"
    tfvars = root / "acme.tfvars.example"
    plan = plan_root(root, tfvars)
    values = load_tfvars(tfvars)
    (trust,) = [s for d in plan.instances("aws_iam_policy_document", "trust") for s in d.args["statement"]]
    assert trust["actions"] == ["sts:AssumeRole"]
    assert trust["principals"] == [{"type": "AWS", "identifiers": [values["worker_role_arn"]]}]
    assert trust["condition"] == [
        {"test": "StringEquals", "variable": "sts:ExternalId", "values": [values["external_id"]]}
    ]
    statements = {
        s["sid"]: s
        for d in plan.instances("aws_iam_policy_document", "permissions")
        for s in d.args["statement"]
    }
    assert set(statements) == {
        "SendFromIdentity",
        "ReadContactList",
        "FindContactList",
        "ReputationUpdates",
        "SuppressionLookup",
    }
    assert statements["FindContactList"]["actions"] == ["ses:ListContactLists"]
    send = statements["SendFromIdentity"]
    assert sorted(send["actions"]) == ["ses:SendEmail", "ses:SendRawEmail"]
    identity, configuration_set = send["resources"]
    assert identity.endswith(f":identity/{values['ses_identity']}")
    assert configuration_set.endswith(f":configuration-set/{values['configuration_set_name']}")
    # a hard bounce or complaint changes this list's contact, nothing else
    assert statements["ReputationUpdates"]["actions"] == ["ses:UpdateContact"]
    assert statements["ReputationUpdates"]["resources"] == statements["ReadContactList"]["resources"]
    contacts = statements["ReadContactList"]
    assert sorted(contacts["actions"]) == ["ses:GetContact", "ses:GetContactList", "ses:ListContacts"]
    assert contacts["resources"][0].endswith(f":contact-list/{values['contact_list_name']}")
    prod = env_config("prod").customer_mappings["acme"]
    assert values["external_id"] == prod.ses_external_id
    assert values["account_id"] == prod.account_id
    assert values["worker_role_arn"].endswith(":role/changeconsole-prod-worker")
    role = plan.instances("aws_iam_role", "ses_sender")[0]
    assert prod.ses_role_arn.endswith(f":role/{role.args['name']}")


def test_customer_ses_role_rejects_a_short_external_id(tmp_path: Path) -> None:
    tfvars = tmp_path / "x.tfvars"
    text = (TF / "customer-account" / "acme.tfvars.example").read_text()
    tfvars.write_text(re.sub(r'external_id\s+= "[^"]+"', 'external_id = "short"', text))
    with pytest.raises(TfError, match="ExternalId"):
        plan_root(TF / "customer-account", tfvars)


# -- Terraform: worker on ECS, monitoring ------------------------------------------------------------------


def test_ecs_module_stop_timeout_must_exceed_the_drain_deadline(tmp_path: Path) -> None:
    plan = env_plan("prod")
    (td,) = plan.instances("aws_ecs_task_definition")
    (container,) = json.loads(td.args["container_definitions"])
    assert container["stopTimeout"] > int(option_value(container["command"], "--shutdown-timeout"))
    env_dir = _drifted_copy(
        tmp_path, "modules/ecs_worker/variables.tf", "default     = 40", "default     = 20"
    )
    prod_dir = env_dir.parent / "prod"
    with pytest.raises(TfError, match="precondition"):
        plan_root(prod_dir, prod_dir / "terraform.tfvars", cache=False)


def test_monitoring_alarms_cover_every_customer() -> None:
    plan = env_plan("prod")
    cfg = env_config("prod")
    alarms = {a.args["alarm_name"]: a.args for a in plan.instances("aws_cloudwatch_metric_alarm")}
    for code, mapping in cfg.customer_mappings.items():
        dlq = alarms[f"changeconsole-prod-dlq-{code}"]
        assert (dlq["namespace"], dlq["metric_name"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
        assert dlq["dimensions"] == {"QueueName": mapping.dlq_name}
        assert (dlq["comparison_operator"], dlq["threshold"]) == ("GreaterThanThreshold", 0)
        age = alarms[f"changeconsole-prod-oldest-{code}"]
        assert age["metric_name"] == "ApproximateAgeOfOldestMessage"
        assert age["dimensions"] == {"QueueName": mapping.queue_name}
        for kind, metric in (("bounce", "Reputation.BounceRate"), ("complaint", "Reputation.ComplaintRate")):
            (query,) = alarms[f"changeconsole-prod-ses-{kind}-{code}"]["metric_query"]
            assert query["account_id"] == mapping.account_id
            assert query["metric"][0]["metric_name"] == metric
        rate = alarms[f"changeconsole-prod-error-rate-{code}"]
        queries = {q["id"]: q for q in rate["metric_query"]}
        assert [i for i, q in queries.items() if q["return_data"]] == ["error_rate"]
        for qid in ("processed", "failed"):
            metric = queries[qid]["metric"][0]
            assert metric["namespace"] == cfg.metrics.namespace
            assert metric["dimensions"] == {"Customer": code}
    for alarm in alarms.values():
        assert alarm["alarm_actions"], alarm["alarm_name"]
        assert "docs/runbooks/monitoring.md#" in alarm["alarm_description"]
    (dashboard,) = plan.instances("aws_cloudwatch_dashboard")
    assert json.loads(dashboard.args["dashboard_body"])["widgets"]


def test_error_rate_alarm_reads_what_the_worker_emits() -> None:
    """The alarm's metric names and dimension are the worker's EMF output (worker/observe.py)."""
    observe = pytest.importorskip("changeconsole.worker.observe")
    cfg = env_config("prod")
    stream = io.StringIO()
    metrics = observe.Metrics(cfg, emf_stream=stream, worker_id="w1")
    metrics.count("acme", "MessagesProcessed")
    metrics.count("acme", "MessagesFailed")
    metrics.flush()
    (doc,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    emitted = {m["Name"] for m in directive["Metrics"]}
    plan = env_plan("prod")
    (alarm,) = [
        a
        for a in plan.instances("aws_cloudwatch_metric_alarm")
        if a.key == "acme" and a.name == "worker_error_rate"
    ]
    for query in alarm.args["metric_query"]:
        if not query.get("metric"):
            continue
        metric = query["metric"][0]
        assert metric["namespace"] == directive["Namespace"]
        assert metric["metric_name"] in emitted
        assert [sorted(metric["dimensions"])] == directive["Dimensions"]
        assert all(doc[d] == v for d, v in metric["dimensions"].items())


def test_alarm_runbook_anchors_exist() -> None:
    text = (ROOT / "docs" / "runbooks" / "monitoring.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", text, re.M)
    }
    src = "\n".join(p.read_text() for p in (TF / "modules" / "monitoring").glob("*.tf"))
    linked = set(re.findall(r"monitoring\.md#([a-z0-9-]+)", src))
    assert linked and linked <= anchors, linked - anchors


# -- backlog publisher (the autoscaling signal) -------------------------------------------------------------


@cache
def backlog_publisher() -> ModuleType:
    path = TF / "modules" / "backlog_publisher" / "src" / "backlog_publisher.py"
    spec = importlib.util.spec_from_file_location("cc_backlog_publisher", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_backlog_publisher_sums_customer_queues(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"bl{uuid.uuid4().hex[:8]}-"
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("QUEUE_NAME_PREFIX", prefix)
    monkeypatch.setenv("DEPLOYMENT", f"{prefix}test")
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_endpoint)
    for code, waiting, in_dlq in (("acme", 3, 0), ("globex", 0, 2), ("initech", 1, 0)):
        url = sqs.create_queue(QueueName=f"{prefix}{code}")["QueueUrl"]
        dlq = sqs.create_queue(QueueName=f"{prefix}{code}-dlq")["QueueUrl"]
        for i in range(waiting):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
        for i in range(in_dlq):
            sqs.send_message(QueueUrl=dlq, MessageBody=f"d{i}")
    sqs.create_queue(QueueName=f"x{prefix}other")
    url = sqs.get_queue_url(QueueName=f"{prefix}initech")["QueueUrl"]
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)
    totals = backlog_publisher().handler({}, None, session=boto3.session.Session(region_name="us-east-1"))
    assert totals == {"QueueBacklog": 3, "QueueInFlight": 1, "DlqBacklog": 2, "Queues": 3}
    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_endpoint)
    metrics = cw.list_metrics(
        Namespace="ChangeConsole", Dimensions=[{"Name": "Deployment", "Value": f"{prefix}test"}]
    )
    assert {m["MetricName"] for m in metrics["Metrics"]} >= {"QueueBacklog", "QueueInFlight", "DlqBacklog"}
    plan = env_plan("prod")
    (fn,) = plan.instances("aws_lambda_function")
    assert fn.args["handler"] == "backlog_publisher.handler"
    env = fn.args["environment"][0]["variables"]
    assert env["METRIC_NAMESPACE"] == env_config("prod").metrics.namespace
    assert env["QUEUE_NAME_PREFIX"] + "acme" == env_config("prod").customer_mappings["acme"].queue_name


def test_unknown_values_stay_unknown() -> None:
    assert is_unknown(Ref("a.b", "arn"))
    assert is_unknown(f"{Ref('a.b', 'arn')}/x")
    assert not is_unknown("arn:aws:s3:::b")


# -- sharded deployments (worker --shard K/N) ---------------------------------------------------------------


def _sharded_plan(tmp_path: Path, shards: int) -> Plan:
    env_dir = _drifted_copy(
        tmp_path,
        "environments/prod/terraform.tfvars",
        "ses_reputation_alarms = true",
        f"ses_reputation_alarms = true\nworker_shards         = {shards}",
    )
    prod = env_dir.parent / "prod"
    return plan_root(prod, prod / "terraform.tfvars", cache=False)


def test_ecs_runs_one_service_per_shard_scaled_on_its_own_backlog(tmp_path: Path) -> None:
    plan = _sharded_plan(tmp_path, 4)
    services = {s.key: s.args for s in plan.instances("aws_ecs_service")}
    assert sorted(services) == ["0", "1", "2", "3"]
    for key, td in ((t.key, t.args) for t in plan.instances("aws_ecs_task_definition")):
        (container,) = json.loads(td["container_definitions"])
        assert container["command"] == [*worker_argv(), "--shard", f"{key}/4"]
        assert td["family"] == services[key]["name"] == f"changeconsole-prod-shard-{key}"
    policies = {p.key: p.args for p in plan.instances("aws_appautoscaling_policy")}
    assert sorted(policies) == sorted(services)
    for key, policy in policies.items():
        metrics = policy["target_tracking_scaling_policy_configuration"][0][
            "customized_metric_specification"
        ][0]
        by_id = {m["id"]: m for m in metrics["metrics"]}
        backlog = by_id["backlog"]["metric_stat"][0]["metric"][0]
        dims = {d["name"]: d["value"] for d in backlog["dimensions"]}
        assert dims == {"Deployment": "changeconsole-prod", "Shard": f"{key}/4"}
        tasks = by_id["tasks"]["metric_stat"][0]["metric"][0]
        assert {d["name"]: d["value"] for d in tasks["dimensions"]}["ServiceName"] == services[key]["name"]
    targets = {t.key: t.args["resource_id"] for t in plan.instances("aws_appautoscaling_target")}
    assert targets == {k: f"service/changeconsole-prod/{s['name']}" for k, s in services.items()}
    (fn,) = plan.instances("aws_lambda_function")
    assert fn.args["environment"][0]["variables"]["SHARD_COUNT"] == "4"
    assert plan.outputs["ecs_service_names"] == {f"{k}/4": s["name"] for k, s in services.items()}


def test_unsharded_ecs_keeps_one_service_under_its_old_address() -> None:
    plan = env_plan("prod")
    assert [s.key for s in plan.instances("aws_ecs_service")] == ["all"]
    assert plan.outputs["ecs_service_names"] == {"all": "changeconsole-prod"}
    main = (TF / "modules" / "ecs_worker" / "main.tf").read_text()
    for address in (
        "aws_ecs_task_definition.worker",
        "aws_ecs_service.worker",
        "aws_appautoscaling_target.worker",
        "aws_appautoscaling_policy.backlog_per_task",
    ):
        assert f'from = {address}\n  to   = {address}["all"]' in main, address


def test_backlog_publisher_publishes_each_shards_backlog(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from changeconsole.worker import shard_of

    publisher = backlog_publisher()
    codes = [f"c{i:03d}" for i in range(200)]
    assert [publisher.shard_of(c, 7) for c in codes] == [shard_of(c, 7) for c in codes]
    prefix = f"sh{uuid.uuid4().hex[:8]}-"
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("QUEUE_NAME_PREFIX", prefix)
    monkeypatch.setenv("DEPLOYMENT", f"{prefix}test")
    monkeypatch.setenv("SHARD_COUNT", "3")
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_endpoint)
    expected = {f"{k}/3": 0 for k in range(3)}
    for i, code in enumerate(codes[:9]):
        url = sqs.create_queue(QueueName=f"{prefix}{code}")["QueueUrl"]
        sqs.create_queue(QueueName=f"{prefix}{code}-dlq")
        for n in range(i % 3):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
        expected[f"{shard_of(code, 3)}/3"] += i % 3
    totals = publisher.handler({}, None, session=boto3.session.Session(region_name="us-east-1"))
    assert totals["QueueBacklog"] == sum(expected.values()) == 9
    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_endpoint)
    for shard, value in expected.items():
        dims = [{"Name": "Deployment", "Value": f"{prefix}test"}, {"Name": "Shard", "Value": shard}]
        metrics = cw.list_metrics(Namespace="ChangeConsole", MetricName="QueueBacklog", Dimensions=dims)
        assert metrics["Metrics"], shard
        stats = cw.get_metric_statistics(
            Namespace="ChangeConsole",
            MetricName="QueueBacklog",
            Dimensions=dims,
            StartTime=datetime.now(UTC) - timedelta(minutes=5),
            EndTime=datetime.now(UTC) + timedelta(minutes=5),
            Period=60,
            Statistics=["Maximum"],
        )
        assert [p["Maximum"] for p in stats["Datapoints"]] == [float(value)], shard


SHARDED = K8S / "sharded"


def test_k8s_sharded_statefulset_ordinal_is_the_shard() -> None:
    kustomization = yaml.safe_load((SHARDED / "kustomization.yaml").read_text())
    files = [r for r in kustomization["resources"] if r != ".."]
    assert ".." in kustomization["resources"] and all((SHARDED / f).is_file() for f in files)
    docs = [d for f in files for d in load_yaml_docs(SHARDED / f)]
    (sts,) = [d for d in docs if d["kind"] == "StatefulSet"]
    (svc,) = [d for d in docs if d["kind"] == "Service"]
    spec = sts["spec"]
    assert svc["spec"]["clusterIP"] == "None" and spec["serviceName"] == svc["metadata"]["name"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    n = int(env["SHARD_COUNT"]["value"])
    assert spec["replicas"] == n
    assert env["SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    assert container["args"] == [*worker_argv(), "--shard", "$(SHARD_INDEX)/$(SHARD_COUNT)"]
    # The same pod as the unsharded Deployment otherwise (image, probes, security, volumes).
    base = k8s_objects()["Deployment/changeconsole-worker"]["spec"]["template"]["spec"]
    (base_container,) = base["containers"]
    for k in ("image", "livenessProbe", "readinessProbe", "startupProbe", "securityContext", "volumeMounts"):
        assert container[k] == base_container[k], k
    for k in ("securityContext", "volumes", "serviceAccountName", "terminationGracePeriodSeconds"):
        assert spec["template"]["spec"][k] == base[k], k

    bursts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    scaled = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ScaledObject"}
    base_trigger = k8s_objects()["ScaledObject/changeconsole-worker"]["spec"]["triggers"][0]["metadata"]
    assert len(bursts) == len(scaled) == n
    for k in range(n):
        name = f"changeconsole-worker-shard-{k}-burst"
        (burst_container,) = bursts[name]["spec"]["template"]["spec"]["containers"]
        assert burst_container["args"] == [*worker_argv(), "--shard", f"{k}/{n}"]
        assert burst_container["image"] == base_container["image"]
        so = scaled[name]["spec"]
        assert so["scaleTargetRef"]["name"] == name and so["minReplicaCount"] == 0
        meta = so["triggers"][0]["metadata"]
        assert meta["metricName"] == "QueueBacklog" and meta["dimensionName"] == "Deployment;Shard"
        assert meta["dimensionValue"] == f"{base_trigger['dimensionValue']};{k}/{n}"
    # The base's unsharded Deployment and ScaledObject are dropped, by their real names.
    deleted = {yaml.safe_load(p["patch"])["metadata"]["name"] for p in kustomization["patches"]}
    assert deleted == {"changeconsole-worker"}
    assert {"Deployment/changeconsole-worker", "ScaledObject/changeconsole-worker"} <= set(k8s_objects())
