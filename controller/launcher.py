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

from controller.endpoints import Listen, Tls
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
    listen: Listen
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


def default_ovsdb_target() -> str:
    """The database `ovs-vsctl` would use: $OVS_RUNDIR/db.sock (default /var/run/openvswitch)."""
    rundir = os.environ.get("OVS_RUNDIR", "/var/run/openvswitch")
    return f"unix:{rundir}/db.sock"


class OneLine(logging.Filter):
    """os-ken logs what a malformed message from a switch did to its parser with a traceback (and its
    hub an uncaught exception as a traceback in the text): a peer's bad bytes are one line here."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("os_ken"):
            return True
        text = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            kind, error = record.exc_info[0], record.exc_info[1]
            text = f"{text.splitlines()[0][:300]}: {kind.__name__}: {str(error)[:200]}"
            record.exc_info, record.exc_text = None, None
        elif "Traceback (most recent call last)" in text:
            lines = text.strip().splitlines()
            text = f"{lines[0].split('Traceback')[0].strip()} {lines[-1][:300]}"
        else:
            return True
        record.msg, record.args = "%s", (text,)
        return True


def setup_logging(log_file: str | None, verbose: bool) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    for handler in handlers:
        handler.addFilter(OneLine())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    if not verbose:
        for noisy in ("os_ken", "ovsdbapp", "ovs"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _who_may_connect(options: RunOptions) -> str:
    users = "root" if os.geteuid() == 0 else f"root or uid {os.geteuid()}"
    if options.tls is not None:
        return f"TLS, switch certificate required; a local peer must run as {users}"
    if options.listen.kind == "unix":
        return f"a unix socket of mode 0600: only {users} can connect"
    return f"TCP: only a local peer running as {users} is accepted (its socket's owner, from /proc/net/tcp)"


def run(options: RunOptions) -> int:
    """Run the agent until SIGTERM/SIGINT; returns the process exit status."""
    from flows.config import InvalidConfig, parse_config, read_config_text

    setup_logging(options.log_file, options.verbose)
    problems = options.tls.problems() if options.tls else []
    for problem in problems:
        LOG.error("%s", problem)
    if problems:
        return EXIT_BAD_INPUT
    try:
        config_text = read_config_text(options.config_path)
        config = parse_config(config_text)
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
    from controller.agent import Agent, AgentSettings
    from controller.control import ControlError, ControlServer
    from controller.listener import OpenFlowListener
    from controller.metrics import Metrics
    from controller.ops import Operations
    from controller.sandbox import Sandbox
    from controller.waiting import PollingSignal
    # isort: on

    cfg.CONF(args=[], project="os_ken", default_config_files=[])
    controller = options.listen.target(tls=options.tls is not None)
    metrics = Metrics()
    agent = Agent(AgentSettings(config, options.host, options.ovsdb, controller, options.datapath_type,
                                config_path=os.path.abspath(options.config_path), config_text=config_text,
                                takeover=options.takeover, takeover_cookies=options.takeover_cookies),
                  metrics)
    sandbox = Sandbox()
    operations = Operations(agent, sandbox)
    control = ControlServer(options.control_socket, operations.handle) if options.control_socket else None
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
        operations.sighup()

    signal.signal(signal.SIGHUP, request_reload)
    if options.pidfile:
        Path(options.pidfile).write_text(f"{os.getpid()}\n")

    listener = OpenFlowListener(options.listen, options.tls, lambda reason: metrics.refused.labels(reason).inc())
    try:
        listener.bind()
    except OSError as error:
        LOG.error("cannot listen for OpenFlow on %s: %s", controller, error.strerror or error)
        return EXIT_FAILED
    listener.install()
    manager = AppManager.get_instance()
    manager.load_apps(["controller.app"])
    contexts = manager.create_contexts()
    contexts["brtun_agent"] = agent
    manager.instantiate_apps(**contexts)
    LOG.info("listening for OpenFlow on %s (%s hub; %s)", controller, options.hub, _who_may_connect(options))
    try:
        if control is not None:
            control.start()
        if options.metrics_port is not None:
            metrics.serve(options.metrics_port)
            LOG.info("Prometheus metrics on http://127.0.0.1:%d/metrics", options.metrics_port)
        agent.start()
        sandbox.start()  # so that the first change does not wait for its parser child to start
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
        listener.close()
        agent.stop()
        sandbox.close()
        if options.pidfile:
            Path(options.pidfile).unlink(missing_ok=True)
        logging.shutdown()
    # The hub's server threads block in accept() and cannot be joined on the
    # native hub; everything of ours is stopped, so leave without waiting.
    os._exit(status)
