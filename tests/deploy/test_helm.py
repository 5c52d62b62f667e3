"""The Helm chart: lint and render every scenario, validate the manifests against the
Kubernetes schemas offline, and check that bad values are refused by name."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tributary.topology import stages

pytestmark = pytest.mark.helm

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "tributary"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("values-*.yaml"))
COMPONENTS = set(stages()) | {"portal"}  # every stage of the topology registry, and the holder portal
KUBERNETES_VERSION = "1.31.0"


def helm() -> str:
    found = shutil.which("helm") or str(Path(os.environ.get("GOPATH", Path.home() / "go")) / "bin" / "helm")
    if not Path(found).exists():
        pytest.fail("helm is not installed: `make tools` installs it (go install helm.sh/helm/v3/cmd/helm)")
    return found


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120)


def render(*values: str, set_: tuple[str, ...] = ()) -> list[dict]:
    args = ["template", "rel", str(CHART)]
    for v in values:
        args += ["-f", str(CHART / "ci" / v) if not os.path.isabs(v) else v]
    for s in set_:
        args += ["--set", s]
    out = run_helm(*args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_scenario_exists():
    assert SCENARIOS == ["values-external.yaml", "values-gpu.yaml", "values-minimal.yaml"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_passes(scenario):
    out = run_helm("lint", str(CHART), "-f", str(CHART / "ci" / scenario), "--strict")
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_manifests_are_valid_kubernetes(scenario):
    docs = render(scenario)
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            # a CRD: no schema in the Kubernetes set; check its shape
            if doc["kind"] == "ServiceMonitor":
                assert doc["spec"]["endpoints"][0]["port"] == "http"
            else:
                assert doc["kind"] == "PrometheusRule" and doc["spec"]["groups"][0]["rules"]
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_component_is_a_probed_scraped_deployment(scenario):
    docs = render(scenario)
    deployments = {**by_kind(docs, "Deployment"), **by_kind(docs, "StatefulSet")}
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments.values()} == COMPONENTS
    for dep in deployments.values():
        pod = dep["spec"]["template"]
        container = pod["spec"]["containers"][0]
        assert container["args"][:2] == ["run", dep["metadata"]["labels"]["app.kubernetes.io/component"]]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] in ("/healthz", "/readyz")
        assert len(pod["metadata"]["annotations"]["checksum/config"]) == 64
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        env = {e["name"]: e for e in container["env"]}
        assert env["STRIPE_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "tributary-stripe"
        assert "value" not in env["STRIPE_API_KEY"]  # secrets only by reference
    services = by_kind(docs, "Service")
    assert len(services) == len(COMPONENTS)
    job = by_kind(docs, "Job")["rel-tributary-topics"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["topics", "create"]
    assert "pre-install" in job["metadata"]["annotations"]["helm.sh/hook"]
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert {"rel-tributary-streams", "rel-tributary-attribution"} <= set(pdbs)


def test_gpu_scenario_requests_gpus_on_gpu_nodes():
    attribution = by_kind(render("values-gpu.yaml"), "StatefulSet")["rel-tributary-attribution"]
    spec = attribution["spec"]["template"]["spec"]
    assert attribution["spec"]["replicas"] == 4
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "$(POD_NAME)" in spec["containers"][0]["args"]  # a distinct transactional id per pod


def test_embedded_chdb_gets_a_volume_and_one_replica_and_external_does_not():
    minimal = render("values-minimal.yaml")
    sink = by_kind(minimal, "Deployment")["rel-tributary-sink-clickhouse"]
    assert sink["spec"]["strategy"]["type"] == "Recreate" and sink["spec"]["replicas"] == 1
    assert by_kind(minimal, "PersistentVolumeClaim")
    external = render("values-external.yaml")
    assert not by_kind(external, "PersistentVolumeClaim")
    env = {e["name"]: e for e in by_kind(external, "Deployment")["rel-tributary-sink-clickhouse"]
           ["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CLICKHOUSE_URL"]["value"].startswith("http://")
    assert env["CLICKHOUSE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "tributary-clickhouse"
    assert env["QDRANT_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "tributary-qdrant"
    assert by_kind(external, "ServiceMonitor")


def test_the_query_endpoint_needs_a_token_from_a_secret():
    """The sink's SQL endpoint listens on the pod's address, so every pod gets the bearer
    token by reference: a Secret the chart makes (random) or one the operator names."""
    docs = render("values-minimal.yaml")
    secret = by_kind(docs, "Secret")["rel-tributary-query-token"]
    assert len(secret["data"]["token"]) >= 40
    for dep in [*by_kind(docs, "Deployment").values(), *by_kind(docs, "StatefulSet").values()]:
        env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["TRIBUTARY_QUERY_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "rel-tributary-query-token",
                                                                           "key": "token"}
    named = render("values-minimal.yaml", set_=("clickhouse.queryTokenSecret.name=ops-token",))
    assert "rel-tributary-query-token" not in by_kind(named, "Secret")
    sink = by_kind(named, "Deployment")["rel-tributary-sink-clickhouse"]
    env = {e["name"]: e for e in sink["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TRIBUTARY_QUERY_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "ops-token"


def test_the_portal_signs_with_a_secret_reads_through_the_sink_and_can_be_exposed():
    """The portal's signing key comes from a Secret (made by the chart, random and kept, or
    named); with embedded chdb it reads through the sink's query Service; cookies are
    Secure behind TLS; an Ingress is there only when asked for."""
    minimal = render("values-minimal.yaml")
    portal = by_kind(minimal, "Deployment")["rel-tributary-portal"]
    container = portal["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["TRIBUTARY_PORTAL_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "rel-tributary-portal-signing",
                                                                            "key": "signing-key"}
    assert len(by_kind(minimal, "Secret")["rel-tributary-portal-signing"]["data"]["signing-key"]) >= 64
    assert env["TRIBUTARY_QUERY_URL"]["value"] == "http://rel-tributary-sink-clickhouse:8080"
    assert env["TRIBUTARY_PORTAL_SECURE_COOKIES"]["value"] == "1"
    assert container["ports"][0]["containerPort"] == 8400 and container["args"] == ["run", "portal"]
    assert not by_kind(minimal, "Ingress")
    external = render("values-external.yaml")
    env = {e["name"]: e for e in by_kind(external, "Deployment")["rel-tributary-portal"]["spec"]["template"]
           ["spec"]["containers"][0]["env"]}
    assert "TRIBUTARY_QUERY_URL" not in env  # a ClickHouse server: read directly, read-only session
    assert env["TRIBUTARY_PORTAL_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "tributary-portal"
    assert "rel-tributary-portal-signing" not in by_kind(external, "Secret")
    ingress = by_kind(external, "Ingress")["rel-tributary-portal"]
    assert ingress["spec"]["rules"][0]["host"] == "royalties.example.com"
    assert ingress["spec"]["tls"][0]["secretName"] == "royalties-tls"
    off = render("values-minimal.yaml", set_=("portal.enabled=false",))
    assert "rel-tributary-portal" not in by_kind(off, "Deployment")


def test_transactional_stages_keep_their_ids_and_pods_run_the_stage_itself():
    """A replacement pod must fence its predecessor's open Kafka transaction: the
    transactional stages are StatefulSets, so the pod name (their transactional id) is
    stable. Pods run the stage in child mode (a crash restarts the container, visible to
    Kubernetes), and a stopping pod gets longer than the stages' own drain."""
    from gpu_workers.worker import DRAIN_TIMEOUT_S

    docs = render("values-minimal.yaml")
    stateful = by_kind(docs, "StatefulSet")
    transactional = {name for name, stage in stages().items() if stage.transactional}
    assert {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in stateful.values()} == transactional
    for name, sts in stateful.items():
        assert sts["spec"]["podManagementPolicy"] == "Parallel" and sts["spec"]["serviceName"] == name
        args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--worker-id") + 1] == "$(POD_NAME)"
    for workload in [*stateful.values(), *by_kind(docs, "Deployment").values()]:
        pod = workload["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["TRIBUTARY_STAGE_CHILD"] == "1"
        assert pod["terminationGracePeriodSeconds"] > DRAIN_TIMEOUT_S
    out = run_helm("template", "rel", str(CHART), "-f", str(CHART / "ci" / "values-minimal.yaml"),
                   "--set", "terminationGracePeriodSeconds=60")
    assert out.returncode != 0 and "terminationGracePeriodSeconds" in out.stderr


def test_the_catalog_calibration_is_used_unless_a_bar_is_fixed(tmp_path, monkeypatch):
    """No bar in the ConfigMap by default: each attribution worker calibrates threshold and
    margin from the registered catalog. An operator may fix both; a margin alone is refused
    (it would silently do nothing: the worker only reads it with a fixed threshold)."""
    from tributary.config import load_pipeline

    def pipeline_env(*files: str) -> dict:
        return by_kind(render("values-minimal.yaml", *files), "ConfigMap")["rel-tributary-pipeline"]["data"]

    default = pipeline_env()
    assert "TRIBUTARY_SIMILARITY_THRESHOLD" not in default and "TRIBUTARY_SIMILARITY_MARGIN" not in default
    assert default["TRIBUTARY_CALIBRATION_TRIM"] == "0"
    monkeypatch.setenv("TRIBUTARY_CALIBRATION_TRIM", default["TRIBUTARY_CALIBRATION_TRIM"])
    assert load_pipeline().calibration_trim == 0.0
    monkeypatch.delenv("TRIBUTARY_CALIBRATION_TRIM")
    assert default["TRIBUTARY_EMBED_BACKEND"] == "auto"
    override = tmp_path / "threshold.yaml"
    override.write_text("pipeline:\n  similarityThreshold: 0.55\n")
    fixed = pipeline_env(str(override))
    assert fixed["TRIBUTARY_SIMILARITY_THRESHOLD"] == "0.55" and "TRIBUTARY_SIMILARITY_MARGIN" not in fixed
    override.write_text("pipeline:\n  similarityThreshold: 0.55\n  similarityMargin: 0.04\n")
    env = pipeline_env(str(override))
    assert (env["TRIBUTARY_SIMILARITY_THRESHOLD"], env["TRIBUTARY_SIMILARITY_MARGIN"]) == ("0.55", "0.04")
    # what the pods read from that ConfigMap: the worker's PipelineConfig
    for name in ("TRIBUTARY_SIMILARITY_THRESHOLD", "TRIBUTARY_SIMILARITY_MARGIN"):
        monkeypatch.delenv(name, raising=False)
    assert (load_pipeline().similarity_threshold, load_pipeline().similarity_margin) == (0.0, 0.0)
    for name in ("TRIBUTARY_SIMILARITY_THRESHOLD", "TRIBUTARY_SIMILARITY_MARGIN"):
        monkeypatch.setenv(name, env[name])
    assert (load_pipeline().similarity_threshold, load_pipeline().similarity_margin) == (0.55, 0.04)
    override.write_text("pipeline:\n  similarityMargin: 0.04\n")
    out = run_helm("template", "rel", str(CHART), "-f", str(CHART / "ci" / "values-minimal.yaml"), "-f",
                   str(override))
    assert out.returncode != 0 and "pipeline.similarityMargin" in out.stderr, out.stderr


def test_a_config_change_rolls_the_pods():
    def checksum(*set_: str) -> str:
        dep = by_kind(render("values-minimal.yaml", set_=set_), "Deployment")["rel-tributary-streams"]
        return dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() != checksum("pipeline.payoutThresholdMicros=5000000")


def test_contracts_set_in_values_are_published_by_the_topics_job():
    """The chart's contracts reach the contracts topic: a hook ConfigMap created before the
    topics Job, which passes it to `tributary topics create --contracts`."""
    import json

    docs = render("values-external.yaml")
    config = by_kind(docs, "ConfigMap")["rel-tributary-contracts"]
    assert config["metadata"]["annotations"]["helm.sh/hook-weight"] == "-6"
    [contract] = json.loads(config["data"]["contracts.json"])["contracts"]
    assert (contract["contract_id"], contract["currency"]) == ("standard-2027", "EUR")
    job = by_kind(docs, "Job")["rel-tributary-topics"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["topics", "create", "--contracts", "/etc/tributary/contracts/contracts.json"]
    assert by_kind(docs, "ConfigMap")["rel-tributary-pipeline"]["data"]["TRIBUTARY_PAYOUT_CURRENCIES"].startswith("JPY=")
    minimal = by_kind(render("values-minimal.yaml"), "Job")["rel-tributary-topics"]
    assert minimal["spec"]["template"]["spec"]["containers"][0]["args"] == ["topics", "create"]


@pytest.mark.parametrize("bad,named", [
    ("components:\n  attribution:\n    replicas: two\n", "/components/attribution/replicas"),
    ("components:\n  streams:\n    replicas: 13\n", "/components/streams/replicas"),  # 12 partitions: 13 cannot all work
    ("components:\n  sinkClickhouse:\n    replicas: 2\n", "/components/sinkClickhouse/replicas"),
    ("kafka:\n  bootstrapServers: not a host list\n", "/kafka/bootstrapServers"),
    ("pipeline:\n  payoutFeeBps: -1\n", "/pipeline/payoutFeeBps"),
    ("pipeline:\n  embedBackend: tensorrt\n", "/pipeline/embedBackend"),
    ("pipeline:\n  similarityThreshold: 1.5\n", "/pipeline/similarityThreshold"),
    ("pipeline:\n  similarityThreshold: 0.5\n  similarityMargin: -0.1\n", "/pipeline/similarityMargin"),
    ("pipeline:\n  calibrationTrim: 0.9\n", "/pipeline/calibrationTrim"),
    ("compnents: {}\n", "compnents"),
    ("contracts:\n  - {contract_id: x, version: 1, currency: usd}\n", "/contracts/0"),
    ("pipeline:\n  payoutCurrencies: yen=5\n", "/pipeline/payoutCurrencies"),
])
def test_bad_values_are_refused_naming_the_value(tmp_path, bad, named):
    values = tmp_path / "bad.yaml"
    values.write_text(bad)
    out = run_helm("template", "rel", str(CHART), "-f", str(CHART / "ci" / "values-minimal.yaml"), "-f", str(values))
    assert out.returncode != 0
    assert named in out.stderr, out.stderr


# -- monitoring: alert rules, the dashboard, the reconcile job ------------------------------------
ROOT = CHART.parents[2]


def defined_metrics() -> set[str]:
    """Every Prometheus metric the code defines (Counter names include their _total)."""
    import re

    names: set[str] = set()
    for path in [*ROOT.glob("tributary/**/*.py"), *ROOT.glob("streams/*.py"), *ROOT.glob("gpu_workers/*.py"),
                 *ROOT.glob("sinks/**/*.py")]:
        names |= set(re.findall(r'(?:Counter|Gauge|Histogram)\(\s*"(tributary_[a-z_]+)"', path.read_text()))
    return names


def used_metrics(expr: str) -> set[str]:
    import re

    return {re.sub(r"_(bucket|count|sum)$", "", m) for m in re.findall(r"\btributary_[a-z_]+", expr)}


def readme_anchors() -> set[str]:
    import re

    heads = re.findall(r"^#+ (.+)$", (ROOT / "README.md").read_text(), flags=re.M)
    return {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_every_alert_watches_a_metric_the_code_exports_and_links_its_runbook():
    docs = render("values-external.yaml")
    [rule] = by_kind(docs, "PrometheusRule").values()
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = rule["spec"]["groups"][0]["rules"]
    metrics, anchors = defined_metrics(), readme_anchors()
    assert {"tributary_stage_lag_records", "tributary_ingest_dead_lettered_total"} <= metrics
    names = {a["alert"] for a in alerts}
    assert {"TributaryDeadLetterRate", "TributaryConsumerLag", "TributaryStageStalled", "TributaryPayoutFailures",
            "TributaryReconcileMismatch"} <= names  # what the issue asks to be alerted on
    for alert in alerts:
        assert used_metrics(alert["expr"]) <= metrics, alert["alert"]
        assert "kube_" in alert["expr"] or used_metrics(alert["expr"]), alert["alert"]
        url = alert["annotations"]["runbook_url"]
        assert url.startswith("https://git.example.com/") and url.split("#")[1] in anchors, url
    assert not by_kind(render("values-minimal.yaml"), "PrometheusRule")  # off by default


def test_the_dashboard_charts_metrics_and_views_that_exist():
    import json

    from sinks.clickhouse.dictionary import TABLES

    docs = render("values-external.yaml")
    dashboard = json.loads(by_kind(docs, "ConfigMap")["rel-tributary-dashboard"]["data"]["tributary.json"])
    assert by_kind(docs, "ConfigMap")["rel-tributary-dashboard"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["panels"] and dashboard["uid"] == "tributary-overview"
    metrics = defined_metrics()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    charted: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if "expr" in target:
                assert used_metrics(target["expr"]) <= metrics, (panel["title"], target["expr"])
                charted |= used_metrics(target["expr"])
            else:
                import re

                tables = set(re.findall(r"FROM (\w+)", target["rawSql"]))
                assert tables and tables <= set(TABLES), (panel["title"], tables)
    assert {"tributary_stage_lag_records", "tributary_payouts_total", "tributary_portal_requests_total"} <= charted


def test_reconcile_runs_on_a_schedule_against_the_sinks_query_service():
    docs = render("values-minimal.yaml")
    cron = by_kind(docs, "CronJob")["rel-tributary-reconcile"]
    job = cron["spec"]["jobTemplate"]["spec"]
    container = job["template"]["spec"]["containers"][0]
    assert container["args"] == ["reconcile"] and job["backoffLimit"] == 0
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    env = {e["name"]: e for e in container["env"]}
    assert env["TRIBUTARY_QUERY_URL"]["value"] == "http://rel-tributary-sink-clickhouse:8080"
    assert env["STRIPE_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "tributary-stripe"
    assert "CronJob" not in {d["kind"] for d in render("values-minimal.yaml", set_=("reconcile.enabled=false",))}
