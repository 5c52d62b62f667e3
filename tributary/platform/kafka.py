"""A real Apache Kafka broker (KRaft, one node, loopback only) from Maven Central jars."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

from tributary.config import PlatformConfig
from tributary.platform.procs import ManagedProcess, PlatformError, port_in_use, port_owner

REPO_ROOT = Path(__file__).resolve().parents[2]
POM = REPO_ROOT / "deploy" / "local" / "kafka" / "pom.xml"


def lib_dir(cfg: PlatformConfig) -> Path:
    return cfg.cache_dir / f"kafka-{cfg.kafka_version}" / "lib"


def jars_present(cfg: PlatformConfig) -> bool:
    return (lib_dir(cfg) / f"kafka_2.13-{cfg.kafka_version}.jar").exists()


def ensure_jars(cfg: PlatformConfig, log=print) -> Path:  # type: ignore[no-untyped-def]
    """Resolve the broker jars with Maven once; later starts reuse the cache."""
    lib = lib_dir(cfg)
    if jars_present(cfg):
        return lib
    if shutil.which("mvn") is None:
        raise PlatformError("Maven (mvn) is not installed: install it (apt-get install maven) and retry")
    if not POM.exists():
        raise PlatformError(f"{POM} is missing: run tributary from a checkout of the repository")
    log(f"fetching Kafka {cfg.kafka_version} jars from Maven Central into {lib} (first run only)")
    tmp = lib.with_name("lib.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(POM), f"-Dkafka.version={cfg.kafka_version}",
         "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise PlatformError(f"mvn could not fetch the Kafka jars:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    return lib


def process(cfg: PlatformConfig) -> ManagedProcess:
    return ManagedProcess("kafka", cfg.run_dir, cfg.log_dir)


def _write_config(cfg: PlatformConfig) -> Path:
    home = cfg.data_dir / "kafka"
    home.mkdir(parents=True, exist_ok=True)
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{cfg.kafka_controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{cfg.kafka_port},CONTROLLER://127.0.0.1:{cfg.kafka_controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{cfg.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(home / "data"),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "min.insync.replicas": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "log.cleaner.dedupe.buffer.size": "16777216",
        "log.segment.bytes": "67108864",
    }
    path = home / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (home / "log4j.properties").write_text(
        "log4j.rootLogger=WARN, stdout\n"
        "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        "log4j.logger.kafka.server.KafkaServer=INFO\n"
        "log4j.logger.kafka.server.BrokerServer=INFO\n"
    )
    return path


def _java_cmd(cfg: PlatformConfig, lib: Path, *args: str) -> list[str]:
    home = cfg.data_dir / "kafka"
    return [
        "java", "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{home / 'log4j.properties'}",
        f"-Dkafka.logs.dir={cfg.log_dir}",
        "-cp", f"{lib}/*", *args,
    ]


def start(cfg: PlatformConfig, log=print) -> None:  # type: ignore[no-untyped-def]
    proc = process(cfg)
    if proc.running():
        log(f"kafka already running (pid {proc.pid()}) on 127.0.0.1:{cfg.kafka_port}")
        return
    if shutil.which("java") is None:
        raise PlatformError("Java is not installed: install a JDK >= 17 (apt-get install openjdk-17-jre-headless)")
    for port in (cfg.kafka_port, cfg.kafka_controller_port):
        if port_in_use(port):
            raise PlatformError(
                f"port {port} is in use by {port_owner(port)}; stop it or pick other ports with "
                "--kafka-port/--kafka-controller-port (or TRIBUTARY_KAFKA_PORT)"
            )
    lib = ensure_jars(cfg, log)
    props = _write_config(cfg)
    data = cfg.data_dir / "kafka" / "data"
    if not (data / "meta.properties").exists():
        cluster_id = uuid.uuid4().hex[:22]
        out = subprocess.run(
            _java_cmd(cfg, lib, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            raise PlatformError(f"formatting Kafka storage failed:\n{out.stdout}{out.stderr}")
    proc.start(_java_cmd(cfg, lib, "kafka.Kafka", str(props)))
    wait_ready(cfg, proc)
    log(f"kafka ready on 127.0.0.1:{cfg.kafka_port} (pid {proc.pid()}, log {proc.log_file})")


def wait_ready(cfg: PlatformConfig, proc: ManagedProcess | None = None, timeout: float = 90.0) -> None:
    """Ask the broker for its metadata until it answers (never just sleep)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cfg.bootstrap_servers, "log_level": 0})
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if proc is not None and not proc.running():
            raise PlatformError(f"kafka exited during start-up; last log lines:\n{proc.tail(30)}")
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = str(exc)
        time.sleep(0.5)
    raise PlatformError(f"kafka did not become ready within {timeout:.0f}s ({last_error})")


def stop(cfg: PlatformConfig) -> bool:
    return process(cfg).stop(timeout=45)
