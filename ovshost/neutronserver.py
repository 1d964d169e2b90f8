"""A real neutron-server for testbeds and benchmarks: MariaDB, RabbitMQ, the Neutron API and RPC server.

Every process runs in a network namespace we made (`ip netns exec`) and
listens only on the address given (the namespace's loopback, or an
address of the testbed's underlay), each started by us as the leader of a
process group of its own, its PID and start time in a pidfile of ours
(ovshost.pids), so it is stopped by PID and its workers with it; nothing
is ever killed by name.  Everything lives in one directory: the config
files this module writes (docs/NEUTRON.md, "The testbed's neutron-server"),
the database, RabbitMQ's node, the logs and pidfiles.

Neutron 29 has no neutron-server command: the API runs as a WSGI
application under gunicorn (ovshost/neutronwsgi.py) and the RPC server as
neutron-rpc-server, which ignores SIGTERM (SIGKILL after one second).
SQLite cannot hold Neutron's schema (its migrations alter constraints), so
the database is Debian's MariaDB; RabbitMQ is Debian's, with a node of its
own (its own Erlang port mapper, its own data directory).
"""

from __future__ import annotations

import configparser
import contextlib
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovshost import pids
from ovshost.state import Daemon

BIN = Path(sys.executable).parent  # neutron-rpc-server, neutron-db-manage and gunicorn are the venv's
API_PORT = 9696
AMQP_PORT = 5672
PROJECT = Path(__file__).resolve().parent.parent
RPC_GRACE = 1.0  # neutron-rpc-server ignores SIGTERM: SIGKILL after this
_RECORDING = threading.Lock()
LOG_LEVELS = ("amqp=WARN,boto=WARN,sqlalchemy=WARN,suds=INFO,oslo.messaging=INFO,oslo_messaging=INFO,iso8601=WARN,"
              "requests.packages.urllib3.connectionpool=WARN,urllib3.connectionpool=WARN,websocket=WARN,"
              "requests.packages.urllib3.util.retry=WARN,urllib3.util.retry=WARN,keystonemiddleware=WARN,"
              "routes.middleware=WARN,stevedore=WARN,taskflow=WARN,keystoneauth=WARN,oslo.cache=INFO,"
              "oslo_policy=INFO,dogpile.core.dogpile=INFO,neutron.service=DEBUG")


class ServerError(RuntimeError):
    pass


@dataclass
class Started:
    """A daemon we started: what it is, how it stops, its Popen (to collect it when it exits)."""

    daemon: Daemon
    process: subprocess.Popen[bytes] | None = None


@dataclass
class NeutronServer:
    """One neutron-server with its database and message bus, in `namespace`, listening on `address`."""

    directory: Path
    namespace: str
    address: str = "127.0.0.1"
    tenant_network_type: str = "gre"
    record: Callable[[Daemon], None] | None = None  # a testbed's state records each daemon before it starts
    agent_down_time: int = 30  # seconds without report_state before the server thinks an agent dead
    timings: dict[str, float] = field(default_factory=dict)
    started: dict[str, Started] = field(default_factory=dict)
    rabbit_password: str = field(default_factory=lambda: secrets.token_hex(8))
    db_password: str = field(default_factory=lambda: secrets.token_hex(8))

    # ----- where things are ---------------------------------------------------------------
    @property
    def etc(self) -> Path:
        return self.directory / "etc"

    @property
    def api_socket(self) -> Path:
        """The API on a unix socket too: reachable from every namespace (ovshost.neutronapi uses it)."""
        return self.directory / "neutron-api.sock"

    @property
    def transport_url(self) -> str:
        return f"rabbit://neutron:{self.rabbit_password}@{self.address}:{AMQP_PORT}/"

    def log(self, what: str) -> Path:
        return self.directory / f"{what}.log"

    def config_files(self) -> list[str]:
        return [str(self.etc / "neutron.conf"), str(self.etc / "plugins" / "ml2" / "ml2_conf.ini")]

    def config_args(self) -> list[str]:
        return [arg for path in self.config_files() for arg in ("--config-file", path)]

    # ----- the config files -----------------------------------------------------------------
    def write_config(self) -> None:
        (self.etc / "plugins" / "ml2").mkdir(parents=True, exist_ok=True)
        (self.directory / "lock").mkdir(exist_ok=True)
        _ini(self.etc / "neutron.conf", {
            "DEFAULT": {"core_plugin": "ml2", "service_plugins": "", "auth_strategy": "noauth",
                        "transport_url": self.transport_url, "host": "controller", "bind_host": self.address,
                        "bind_port": str(API_PORT), "api_paste_config": str(self.etc / "api-paste.ini"),
                        "rpc_workers": "1", "rpc_state_report_workers": "0", "dhcp_agent_notification": "false",
                        "notify_nova_on_port_status_changes": "false", "notify_nova_on_port_data_changes": "false",
                        "agent_down_time": str(self.agent_down_time), "debug": "false",
                        "log_dir": str(self.directory), "use_stderr": "false",
                        # oslo.log's defaults, and neutron.service's lifecycle lines: "RpcWorker start finished"
                        # says the RPC server consumes its topics
                        "default_log_levels": LOG_LEVELS},
            "database": {"connection": f"mysql+pymysql://neutron:{self.db_password}@{self.address}/neutron"},
            "oslo_concurrency": {"lock_path": str(self.directory / "lock")},
            "oslo_policy": {"enforce_new_defaults": "false", "enforce_scope": "false"},
        })
        _ini(self.etc / "plugins" / "ml2" / "ml2_conf.ini", {
            "ml2": {"type_drivers": "flat,vlan,vxlan,gre", "tenant_network_types": self.tenant_network_type,
                    "mechanism_drivers": "openvswitch,l2population", "extension_drivers": "port_security"},
            "ml2_type_vxlan": {"vni_ranges": "1:1000"},
            "ml2_type_gre": {"tunnel_id_ranges": "1:1000"},
            "ml2_type_flat": {"flat_networks": "*"},
        })
        shutil.copyfile(Path(__file__).with_name("neutron-api-paste.ini"), self.etc / "api-paste.ini")
        rabbit = self.directory / "rabbitmq"
        (rabbit / "home").mkdir(parents=True, exist_ok=True)
        (rabbit / "enabled_plugins").write_text("[].\n")
        (rabbit / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.address}:{AMQP_PORT}\n"
            f"default_user = neutron\ndefault_pass = {self.rabbit_password}\n"
            "loopback_users = none\n"  # agents connect from the testbed's hosts
            "log.file.level = warning\n")

    def agent_config(self, local_ip: str, tunnel_types: tuple[str, ...] = ("gre",), l2_population: bool = True,
                     report_interval: float = 4, datapath_id: int | None = None, settle_seconds: float = 3) -> str:
        """An agent's config file for `brtun run --neutron`, with Neutron's option names."""
        parser = configparser.ConfigParser()
        parser.read_dict({"DEFAULT": {"transport_url": self.transport_url, "rpc_response_timeout": "10"},
                          "ovs": {"local_ip": local_ip},
                          "agent": {"tunnel_types": ",".join(tunnel_types), "l2_population": str(l2_population).lower(),
                                    "report_interval": str(report_interval)},
                          "brtun": {"settle_seconds": str(settle_seconds),
                                    **({"datapath_id": hex(datapath_id)} if datapath_id else {})}})
        lines = []
        for section in ["DEFAULT", *parser.sections()]:
            lines.append(f"[{section}]")
            items = parser.defaults() if section == "DEFAULT" else {
                k: v for k, v in parser.items(section) if k not in parser.defaults()}
            lines += [f"{key} = {value}" for key, value in items.items()]
        return "\n".join(lines) + "\n"

    # ----- processes --------------------------------------------------------------------------
    def _spawn(self, what: str, argv: list[str], env: dict[str, str] | None = None, grace: float = 5.0,
               cwd: Path | None = None) -> Started:
        pidfile = self.directory / f"{what}.pid"
        daemon = Daemon(what, str(pidfile), str(self.directory), self.namespace, group=True, grace=grace)
        with _RECORDING:  # daemons start from two threads (start): one state file
            if self.record is not None:
                self.record(daemon)  # recorded before it starts: a crash in between leaks nothing
            with self.log(what).open("ab") as log:
                process = subprocess.Popen(["ip", "netns", "exec", self.namespace, *argv], stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                           cwd=cwd or self.directory, start_new_session=True)
            pids.write(pidfile, process.pid)
            started = Started(daemon, process)
            self.started[what] = started
        return started

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        started = self.started[what]
        while not ready():
            if started.process is not None and started.process.poll() is not None:
                raise ServerError(f"{what} exited ({started.process.returncode}); its log:\n"
                                  + _tail(self.log(what)))
            if time.monotonic() > deadline:
                raise ServerError(f"{what} not ready after {timeout:.0f} s; its log:\n" + _tail(self.log(what)))
            time.sleep(0.1)

    def start(self) -> dict[str, float]:
        """MariaDB and the schema while RabbitMQ boots, then the RPC server and the API, each ready before
        the next.
        On failure everything already started is stopped, then the error raised."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.write_config()
        errors: list[BaseException] = []

        def bus() -> None:  # RabbitMQ boots (about 4 s) while MariaDB starts and takes the schema
            try:
                self._timed("rabbitmq", self.start_rabbitmq)
            except BaseException as error:
                errors.append(error)

        rabbit = threading.Thread(target=bus, name="rabbitmq-start")
        try:
            rabbit.start()
            self._timed("mariadb", self.start_mariadb)
            self._timed("schema", self._migrate)
            rabbit.join()
            if errors:
                raise errors[0]
            self._timed("neutron-rpc-server", self.start_rpc_server)
            self._timed("neutron-api", self.start_api)
        except BaseException:
            rabbit.join()
            self.stop()
            raise
        return self.timings

    def _timed(self, what: str, step: Callable[[], None]) -> None:
        started = time.monotonic()
        step()
        self.timings[what] = time.monotonic() - started

    def start_mariadb(self) -> None:
        data = self.directory / "mysql"
        if not data.exists():
            subprocess.run(["mariadb-install-db", f"--datadir={data}", "--user=root", "--skip-test-db",
                            "--auth-root-authentication-method=socket", "--innodb-log-file-size=16M"],
                           check=True, capture_output=True, timeout=120)
        sock = self.directory / "mysql.sock"
        self._spawn("mariadb", ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}",
                                f"--bind-address={self.address}", "--port=3306", "--user=root", "--skip-log-bin",
                                "--innodb-log-file-size=16M", "--innodb-buffer-pool-size=64M",
                                "--skip-name-resolve", f"--pid-file={self.directory / 'mariadbd.pid'}"])
        self._wait("mariadb", lambda: _mysql(sock, "SELECT 1", check=False).returncode == 0, 60)
        _mysql(sock, "CREATE DATABASE IF NOT EXISTS neutron; "
                     f"CREATE USER IF NOT EXISTS 'neutron'@'%' IDENTIFIED BY '{self.db_password}'; "
                     "GRANT ALL PRIVILEGES ON neutron.* TO 'neutron'@'%'; FLUSH PRIVILEGES;")

    def _migrate(self) -> None:
        result = subprocess.run(["ip", "netns", "exec", self.namespace, str(BIN / "neutron-db-manage"),
                                 *self.config_args(), "upgrade", "heads"],
                                capture_output=True, text=True, timeout=300, cwd=self.directory)
        self.log("neutron-db-manage").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise ServerError(f"neutron-db-manage upgrade heads failed:\n{result.stderr[-3000:]}")

    def _rabbit_env(self) -> dict[str, str]:
        rabbit = self.directory / "rabbitmq"
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(rabbit / "home"), "LANG": "C.UTF-8",
                "RABBITMQ_MNESIA_BASE": str(rabbit / "mnesia"), "RABBITMQ_LOG_BASE": str(rabbit / "log"),
                "RABBITMQ_NODENAME": "rabbit@localhost", "RABBITMQ_NODE_IP_ADDRESS": self.address,
                # Erlang's own traffic (the port mapper, the node's distribution port) stays on loopback:
                # the node is rabbit@localhost; only AMQP listens on the given address.
                "RABBITMQ_NODE_PORT": str(AMQP_PORT), "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(rabbit / "enabled_plugins"),
                "RABBITMQ_CONFIG_FILE": str(rabbit / "rabbitmq.conf"),
                "RABBITMQ_CONF_ENV_FILE": str(rabbit / "rabbitmq-env.conf"),
                "RABBITMQ_PID_FILE": str(rabbit / "rabbitmq-server.pid"),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}"}

    def start_rabbitmq(self) -> None:
        """Its own Erlang port mapper first (else the Erlang VM starts one that outlives it), then the node."""
        env = self._rabbit_env()
        if pids.owned_pid(self.directory / "epmd.pid", "") is None:
            self._spawn("epmd", ["epmd", "-address", "127.0.0.1"], env=env)
            self._wait("epmd", lambda: subprocess.run(["ip", "netns", "exec", self.namespace, "epmd", "-names"],
                                                      env=env, capture_output=True).returncode == 0, 10)
        log = self.log("rabbitmq")
        offset = log.stat().st_size if log.exists() else 0
        self._spawn("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=self._rabbit_env())
        self._wait("rabbitmq", lambda: "Starting broker... completed" in log.read_text()[offset:], 60)

    def start_rpc_server(self) -> None:
        log = self.directory / "neutron-rpc-server.log"
        offset = log.stat().st_size if log.exists() else 0
        self._spawn("neutron-rpc-server", [str(BIN / "neutron-rpc-server"),
                                           *self.config_args()],
                    grace=RPC_GRACE)
        # Its worker consumes q-plugin and q-reports-plugin once it has started its RPC listeners.
        self._wait("neutron-rpc-server", lambda: "RpcWorker start finished" in _read(log, offset), 90)

    def start_api(self) -> None:
        if self.api_socket.exists():
            self.api_socket.unlink()
        env = {**os.environ, "OS_NEUTRON_CONFIG_DIR": str(self.etc),
               "OS_NEUTRON_CONFIG_FILES": "neutron.conf;plugins/ml2/ml2_conf.ini"}
        self._spawn("neutron-api", [str(BIN / "gunicorn"), "--workers", "1", "--threads", "4", "--timeout", "120",
                                    "--bind", f"{self.address}:{API_PORT}", "--bind", f"unix:{self.api_socket}",
                                    "--chdir", str(PROJECT), "ovshost.neutronwsgi:application"], env=env)
        self._wait("neutron-api", self._api_answers, 90)

    def _api_answers(self) -> bool:
        try:
            status, _ = api_request(self.api_socket, "GET", "/v2.0/networks", timeout=5)
        except OSError:
            return False
        return status == 200

    def stop(self, what: str | None = None) -> list[str]:
        """Stop every daemon (or one), the API first; by PID, with its group; collect them."""
        order = ["neutron-api", "neutron-rpc-server", "rabbitmq", "epmd", "mariadb"]
        stopped = []
        for name in order if what is None else [what]:
            started = self.started.get(name)
            if started is None:
                continue
            daemon = started.daemon
            if pids.stop(Path(daemon.pidfile), daemon.marker, daemon.grace, daemon.group):
                stopped.append(name)
            if started.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    started.process.wait(timeout=10)
        return stopped

    def kill(self, what: str) -> int | None:
        """SIGKILL a daemon and its group now (a fault test's crash); its PID."""
        started = self.started[what]
        pid = pids.kill(Path(started.daemon.pidfile), started.daemon.marker, group=True)
        if started.process is not None:
            started.process.wait(timeout=10)
        return pid

    def restart(self, what: str) -> float:
        """Start a stopped or killed daemon again; seconds until it is ready."""
        started = time.monotonic()
        {"rabbitmq": self.start_rabbitmq, "neutron-rpc-server": self.start_rpc_server,
         "neutron-api": self.start_api, "mariadb": self.start_mariadb}[what]()
        return time.monotonic() - started

    def remove(self) -> None:
        """Stop everything, then delete the directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _ini(path: Path, sections: dict[str, dict[str, str]]) -> None:
    lines = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in options.items()]
    path.write_text("\n".join(lines) + "\n")


def _read(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as stream:
            stream.seek(offset)
            return stream.read().decode(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(_read(path, 0).splitlines()[-lines:])


def _mysql(sock: Path, sql: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["mariadb", "--no-defaults", "-S", str(sock), "-u", "root", "-e", sql],
                            capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise ServerError(f"mariadb: {sql[:60]}...: {result.stderr.strip()}")
    return result


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def api_request(sock: Path, method: str, path: str, body: dict[str, Any] | None = None, project: str = "demo",
                timeout: float = 60) -> tuple[int, Any]:
    """One request to the Neutron API over its unix socket (noauth: the project in a header)."""
    connection = _UnixConnection(sock, timeout)
    try:
        connection.request(method, path, body=json.dumps(body) if body is not None else None,
                           headers={"X-Project-Id": project, "Content-Type": "application/json",
                                    "Accept": "application/json"})
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
    finally:
        connection.close()
    try:
        return response.status, json.loads(text) if text else None
    except json.JSONDecodeError:
        return response.status, text
