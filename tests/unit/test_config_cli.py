import socket
import subprocess
import sys

import pytest

from tributary.cli import build_parser, main
from tributary.config import ConfigError, load_pipeline, load_platform
from tributary.platform import kafka
from tributary.platform.procs import PlatformError


def test_every_problem_is_listed_at_once(monkeypatch):
    monkeypatch.setenv("TRIBUTARY_KAFKA_PORT", "80")
    with pytest.raises(ConfigError) as err:
        load_platform(stripe_port=80)
    assert "kafka_port=80" in str(err.value) and "stripe_port=80" in str(err.value)


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("TRIBUTARY_PAYOUT_THRESHOLD_MICROS", "lots")
    with pytest.raises(ConfigError, match="TRIBUTARY_PAYOUT_THRESHOLD_MICROS='lots': expected int"):
        load_pipeline()


def test_secret_is_not_in_repr():
    assert "sk_test" not in repr(load_pipeline())


def test_help_for_every_command():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    assert {"up", "down", "status", "doctor", "run", "catalog", "holders", "sql", "demo", "topics",
            "loadgen"} <= set(commands)
    for name in commands:
        out = subprocess.run([sys.executable, "-m", "tributary.cli", name, "--help"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "usage: tributary" in out.stdout


def test_bad_arguments_give_a_usage_message_not_a_traceback():
    out = subprocess.run([sys.executable, "-m", "tributary.cli", "run", "nonsense"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "invalid choice: 'nonsense'" in out.stderr and "Traceback" not in out.stderr


def test_write_statements_are_refused(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path), "sql", "DROP TABLE ledger_entries"]) == 1
    assert "only read-only statements" in capsys.readouterr().err


def test_busy_port_gives_a_clear_message(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        cfg = load_platform(data_dir=tmp_path, kafka_port=port, kafka_controller_port=port + 1 if port < 65535 else 1025)
        with pytest.raises(PlatformError, match=f"port {port} is in use"):
            kafka.start(cfg, log=lambda m: None)


def test_a_sink_run_in_the_foreground_is_found_by_its_query_port(tmp_path):
    """`tributary run sink-clickhouse` writes no pid file: the CLI used to open the locked
    chdb directory itself and crash. It now finds the sink by its query server."""
    import socket

    from tributary.config import load_platform
    from tributary.query import sink_running

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        cfg = load_platform(data_dir=tmp_path, clickhouse_query_port=port)
        assert sink_running(cfg)
    assert not sink_running(cfg)
