"""Start the os-ken app from Python (os-ken 4 has no osken-manager) and stop it cleanly.

Two os-ken 4.2 pitfalls shape this: `os_ken.base.app_manager` must be
imported before `os_ken.controller.controller` (circular import otherwise),
and `AppManager.run_apps` crashes at shutdown on the native hub (its
threads have no `kill`), so the apps are loaded, instantiated and waited on
here.  SIGTERM and SIGINT stop the agent: flows and ports stay in place.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from controller import collector
from controller.hub import select_hub
from flows.exitstatus import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK

LOG = logging.getLogger("brtun")
# `brtun run --metrics-port`'s default.  Its home is here, not in controller.metrics: every brtun
# command builds the parser that shows it, and importing prometheus_client would cost each 30 ms.
DEFAULT_METRICS_PORT = 9640


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """What `brtun run` was asked to do; built by name (controller.cli), never by position."""

    config_path: str
    host: str
    ovsdb: str
    listen_host: str
    listen_port: int
    hub: str
    datapath_type: str
    pidfile: str | None = None
    log_file: str | None = None
    verbose: bool = False
    control_socket: str | None = None
    metrics_port: int | None = None  # None: no metrics endpoint
    tls: Tls | None = None
    takeover: bool = False
    takeover_cookies: frozenset[int] | None = None  # None: every cookie found at the first read


@dataclass(frozen=True)
class Tls:
    """The agent's key and certificate, and the CA that must have signed the switch's."""

    private_key: str
    certificate: str
    ca_certificate: str

    def problems(self) -> list[str]:
        return [f"{what}: cannot read {path}" for what, path in
                (("--ssl-key", self.private_key), ("--ssl-cert", self.certificate),
                 ("--ssl-ca-cert", self.ca_certificate)) if not os.access(path, os.R_OK)]


def default_ovsdb_target() -> str:
    """The database `ovs-vsctl` would use: $OVS_RUNDIR/db.sock (default /var/run/openvswitch)."""
    rundir = os.environ.get("OVS_RUNDIR", "/var/run/openvswitch")
    return f"unix:{rundir}/db.sock"


def setup_logging(log_file: str | None, verbose: bool) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    if not verbose:
        for noisy in ("os_ken", "ovsdbapp", "ovs"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


class TlsRefusals(logging.Filter):
    """os-ken logs a switch whose certificate fails verification as an uncaught exception with a
    traceback; say it in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "uncaught exception" in text and "SSL" in text:
            reason = text.strip().splitlines()[-1]
            record.msg, record.args = "a switch failed the TLS handshake (connection refused): %s", (reason,)
            record.name, record.levelno, record.levelname = "brtun", logging.WARNING, "WARNING"
        return True


def run(options: RunOptions) -> int:
    """Run the agent until SIGTERM/SIGINT; returns the process exit status."""
    from flows.config import InvalidConfig, load_config

    setup_logging(options.log_file, options.verbose)
    problems = options.tls.problems() if options.tls else []
    for problem in problems:
        LOG.error("%s", problem)
    if problems:
        return EXIT_BAD_INPUT
    try:
        with collector.paused():  # the config's values live as long as the agent runs it
            config = load_config(options.config_path)
        with open(options.config_path, encoding="utf-8") as stream:
            config_text = stream.read()
    except InvalidConfig as error:
        for problem in error.errors:
            LOG.error("%s: %s", options.config_path, problem)
        return EXIT_BAD_INPUT
    if options.host not in config.host_names:
        LOG.error("no host %r in %s (hosts: %s)", options.host, options.config_path,
                  ", ".join(config.host_names))
        return EXIT_BAD_INPUT

    select_hub(options.hub)
    # Import order matters from here on (see the module docstring).
    # isort: off
    from os_ken import cfg
    from os_ken.base.app_manager import AppManager

    import os_ken.controller.controller  # noqa: F401  (registers the ofp_* options)
    from controller import ops
    from controller.agent import Agent, AgentSettings
    from controller.control import ControlError, ControlServer
    from controller.metrics import Metrics
    from controller.waiting import PollingSignal
    # isort: on

    cfg.CONF(args=[], project="os_ken", default_config_files=[])
    cfg.CONF.set_override("ofp_listen_host", options.listen_host)
    # An explicit port, or os-ken also listens on the legacy 6633.
    cfg.CONF.set_override("ofp_tcp_listen_port", options.listen_port)
    scheme = "tcp"
    if options.tls is not None:  # os-ken then serves TLS only, and requires the switch's certificate
        scheme = "ssl"
        cfg.CONF.set_override("ofp_ssl_listen_port", options.listen_port)
        cfg.CONF.set_override("ctl_privkey", options.tls.private_key)
        cfg.CONF.set_override("ctl_cert", options.tls.certificate)
        cfg.CONF.set_override("ca_certs", options.tls.ca_certificate)

        logging.getLogger("os_ken.lib.hub").addFilter(TlsRefusals())

    controller = f"{scheme}:{options.listen_host}:{options.listen_port}"
    metrics = Metrics()
    agent = Agent(AgentSettings(config, options.host, options.ovsdb, controller, options.datapath_type,
                                config_path=os.path.abspath(options.config_path), config_text=config_text,
                                takeover=options.takeover, takeover_cookies=options.takeover_cookies),
                  metrics)
    control = ControlServer(options.control_socket, lambda request: ops.handle(agent, request)) \
        if options.control_socket else None
    stopping = PollingSignal()
    received: list[int] = []

    # Signal handlers only set flags and queue work: they interrupt the main thread anywhere,
    # even inside a lock that logging or an event would need.
    def request_stop(signum: int, _frame: object) -> None:
        received.append(signum)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def request_reload(_signum: int, _frame: object) -> None:
        ops.sighup(agent)

    signal.signal(signal.SIGHUP, request_reload)
    if options.pidfile:
        Path(options.pidfile).write_text(f"{os.getpid()}\n")

    manager = AppManager.get_instance()
    manager.load_apps(["controller.app"])
    contexts = manager.create_contexts()
    contexts["brtun_agent"] = agent
    manager.instantiate_apps(**contexts)
    LOG.info("listening for OpenFlow on %s:%d (%s hub, %s)", options.listen_host, options.listen_port,
             options.hub, "TLS, switch certificate required" if options.tls else "TCP")
    try:
        if control is not None:
            control.start()
        if options.metrics_port is not None:
            metrics.serve(options.metrics_port)
            LOG.info("Prometheus metrics on http://127.0.0.1:%d/metrics", options.metrics_port)
        agent.start()
        while not stopping.is_set():
            stopping.wait(timeout=0.5)
        LOG.info("received %s: stopping", signal.Signals(received[0]).name)
    except (ControlError, OSError) as error:
        LOG.error("cannot start: %s", error)
        status = EXIT_FAILED
    except Exception:
        LOG.exception("the agent failed")
        status = EXIT_FAILED
    else:
        status = EXIT_OK
    finally:
        if control is not None:
            control.stop()
        agent.stop()
        if options.pidfile:
            Path(options.pidfile).unlink(missing_ok=True)
        logging.shutdown()
    # The hub's server threads block in accept() and cannot be joined on the
    # native hub; everything of ours is stopped, so leave without waiting.
    os._exit(status)
