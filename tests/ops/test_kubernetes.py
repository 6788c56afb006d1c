"""deploy/kubernetes/: rendered as kustomize would, validated offline against the API schemas.

kubernetes-validate ships the Kubernetes JSON schemas, so this runs without a cluster or
network. The renderer below does the part of kustomize these manifests use (resources,
namespace, images, config map and secret generators, whole-object patches); the checks
then hold the manifests to what docs/scaling.md promises.
"""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as k8s

from app.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
VERSIONS = ("1.30.0", k8s.latest_version())  # preStop `sleep` is on by default from 1.30
# docs/benchmarks.md: CPU per call-second at 20-60 calls, memory per call, idle RSS.
CPU_CORES_PER_CALL = 0.010
MB_PER_CALL = 0.4
IDLE_MB = 145
Doc = dict[str, Any]


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base.get(key), value) if key in base else value
        return out
    return copy.deepcopy(patch)


def render(directory: Path) -> list[Doc]:
    """The objects `kubectl kustomize directory` would print (for these manifests)."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[Doc] = []
    for resource in kust.get("resources", []):
        path = (directory / resource).resolve()
        if path.is_dir():
            docs.extend(render(path))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for gen in kust.get("configMapGenerator", []):
        data: dict[str, str] = {}
        for env in gen.get("envs", []):
            data |= read_env(directory / env)
        for file in gen.get("files", []):
            data[Path(file).name] = (directory / file).read_text()
        docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": gen["name"]}, "data": data})  # fmt: skip
    for gen in kust.get("secretGenerator", []):
        data = {}
        for env in gen.get("envs", []):
            source = directory / env
            if not source.exists():  # secret.env is the user's; its template stands in
                source = directory / f"{env}.example"
            data |= read_env(source)
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        docs.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                     "metadata": {"name": gen["name"]}, "data": encoded})  # fmt: skip
    for patch in kust.get("patches", []):
        new = yaml.safe_load((directory / patch["path"]).read_text())
        [i] = [i for i, d in enumerate(docs) if _key(d) == _key(new)]
        docs[i] = merge(docs[i], new)
    for image in kust.get("images", []):
        for doc in docs:
            for container in _containers(doc):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image['newName']}:{image['newTag']}"
    if "namespace" in kust:
        for doc in docs:
            if doc["kind"] != "Namespace":
                doc["metadata"]["namespace"] = kust["namespace"]
    return docs


def _key(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def _containers(doc: Doc) -> list[Doc]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    containers: list[Doc] = spec.get("containers", [])
    return containers


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    [doc] = [d for d in docs if _key(d) == (kind, name)]
    return doc


@pytest.fixture(scope="module")
def base() -> list[Doc]:
    return render(ROOT)


@pytest.mark.parametrize("overlay", [ROOT, ROOT / "overlays" / "active-calls"])
@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_for_the_kubernetes_api(overlay: Path, version: str) -> None:
    docs = render(overlay)
    kinds = {d["kind"] for d in docs}
    assert kinds >= {"Deployment", "Service", "Ingress", "PodDisruptionBudget",
                     "HorizontalPodAutoscaler", "ConfigMap", "Secret", "StatefulSet"}  # fmt: skip
    for doc in docs:
        k8s.validate(doc, version, strict=True)  # raises with the path of what is wrong


def test_the_validator_rejects_a_mistake(base: list[Doc]) -> None:
    broken = copy.deepcopy(one(base, "Deployment", "voicebot"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(k8s.ValidationError):
        k8s.validate(broken, VERSIONS[0], strict=True)


def test_settings_are_real_settings(base: list[Doc], tmp_path: Path) -> None:
    settings = one(base, "ConfigMap", "voicebot-settings")["data"]
    known = {name.upper() for name in Settings.model_fields}
    assert set(settings) <= known, set(settings) - known
    secret_keys = set(read_env(ROOT / "secret.env.example"))
    assert secret_keys <= known
    values = {k.lower(): v for k, v in settings.items()}
    values["agents_file"] = mounted_agents_file(base, tmp_path)  # the pod's path, here
    load_settings(env_file=None, **values)  # every value is valid, too


def test_the_pod_is_locked_down_and_drains_within_its_grace_period(base: list[Doc]) -> None:
    deployment = one(base, "Deployment", "voicebot")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Writable places are emptyDirs: /tmp and the recordings spool RECORDINGS_DIR.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert "emptyDir" in mounts["/tmp"] and "emptyDir" in mounts[env["RECORDINGS_DIR"]]
    # Settings, secrets and the agents file come from the generated objects.
    refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
    assert refs == {"voicebot-settings", "voicebot-secrets"}
    settings = one(base, "ConfigMap", "voicebot-settings")["data"]
    agents = Path(settings["AGENTS_FILE"])
    assert mounts[str(agents.parent)]["configMap"]["name"] == "voicebot-agents"
    assert agents.name in one(base, "ConfigMap", "voicebot-agents")["data"]
    # SIGKILL must not come before the drain and the closing notice are over.
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(settings["DRAIN_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + 25
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def _cores(value: str) -> float:
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


def _mebibytes(value: str) -> float:
    match = re.fullmatch(r"(\d+)(Mi|Gi)", value)
    assert match, value
    return int(match[1]) * (1024 if match[2] == "Gi" else 1)


def test_requests_fit_max_active_calls_by_the_bench_figures(base: list[Doc]) -> None:
    [container] = _containers(one(base, "Deployment", "voicebot"))
    calls = int(one(base, "ConfigMap", "voicebot-settings")["data"]["MAX_ACTIVE_CALLS"])
    requests = container["resources"]["requests"]
    assert _cores(requests["cpu"]) >= calls * CPU_CORES_PER_CALL
    assert _mebibytes(requests["memory"]) >= IDLE_MB + calls * MB_PER_CALL
    assert "cpu" not in container["resources"]["limits"]  # no throttling mid-call


def test_service_pdb_hpa_and_ingress_point_at_the_pods(base: list[Doc]) -> None:
    labels = one(base, "Deployment", "voicebot")["spec"]["template"]["metadata"]["labels"]
    service = one(base, "Service", "voicebot")
    assert service["spec"]["selector"].items() <= labels.items()
    pdb = one(base, "PodDisruptionBudget", "voicebot")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = one(base, "HorizontalPodAutoscaler", "voicebot")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "voicebot"
    assert hpa["spec"]["minReplicas"] >= 2
    ingress = one(base, "Ingress", "voicebot")
    notes = ingress["metadata"]["annotations"]
    for name in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[f"nginx.ingress.kubernetes.io/{name}"]) >= 3600
    paths = {p["path"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert "/twilio" in paths and "/metrics" not in paths
    backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"]
                for p in r["http"]["paths"]}  # fmt: skip
    assert backends == {"voicebot"}


def test_active_calls_overlay_scales_on_the_metric_the_service_exports() -> None:
    hpa = one(render(ROOT / "overlays" / "active-calls"), "HorizontalPodAutoscaler", "voicebot")
    [pods] = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    from app.metrics import Metrics

    exported = {m.name for m in Metrics().registry.collect()}
    assert pods["metric"]["name"] in exported
    rules = yaml.safe_load(
        (ROOT / "overlays" / "active-calls" / "prometheus-adapter-rules.yaml").read_text()
    )
    assert rules["rules"]["custom"][0]["name"]["as"] == pods["metric"]["name"]


def mounted_agents_file(base: list[Doc], directory: Path) -> Path:
    """The agents ConfigMap's file, written where this test can read it."""
    name = Path(one(base, "ConfigMap", "voicebot-settings")["data"]["AGENTS_FILE"]).name
    path = directory / name
    path.write_text(one(base, "ConfigMap", "voicebot-agents")["data"][name])
    return path


def test_the_agents_file_loads(base: list[Doc], tmp_path: Path) -> None:
    """agents.toml as mounted: the service's own loader accepts it with these settings."""
    from app.agents.loader import build_agents

    settings = one(base, "ConfigMap", "voicebot-settings")["data"]
    values = {k.lower(): v for k, v in settings.items()}
    values["agents_file"] = mounted_agents_file(base, tmp_path)
    book = build_agents(load_settings(env_file=None, **values))
    assert [agent.name for agent in book] == ["front-desk"]
