"""Start the os-ken app from Python (os-ken 4 has no osken-manager) and stop it cleanly.

Two os-ken 4.2 pitfalls shape this: `os_ken.base.app_manager` must be
imported before `os_ken.controller.controller` (circular import otherwise),
and `AppManager.run_apps` crashes at shutdown on the native hub (its
threads have no `kill`), so the apps are loaded, instantiated and waited on
here.  SIGTERM and SIGINT stop the agent: flows and ports stay in place.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.endpoints import Listen, Tls
from controller.hub import select_hub
from flows import collector
from flows.exitstatus import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK

LOG = logging.getLogger("brtun")
# `brtun run --metrics-port`'s default.  Its home is here, not in controller.metrics: every brtun
# command builds the parser that shows it, and importing prometheus_client would cost each 30 ms.
DEFAULT_METRICS_PORT = 9640


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """What `brtun run` was asked to do; built by name (controller.cli), never by position."""

    config_path: str | None  # None with neutron
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
    neutron: tuple[str, ...] = ()  # Neutron's agent config files: the config comes from neutron-server
    no_switch: bool = False  # with neutron: compute and report only (controller.computeonly)


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
    setup_logging(options.log_file, options.verbose)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack to stderr
    problems = options.tls.problems() if options.tls else []
    for problem in problems:
        LOG.error("%s", problem)
    if problems:
        return EXIT_BAD_INPUT
    if options.neutron:
        return _run_neutron(options)
    from flows.config import InvalidConfig, parse_config, read_config_text

    assert options.config_path is not None
    try:
        config_text = read_config_text(options.config_path)
        with collector.paused():  # the config's values live as long as the agent runs it
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
    stop = _Stop(options)
    return _serve(options, stop, lambda: (config, os.path.abspath(options.config_path or ""), config_text, None))


class _Stop:
    """SIGTERM/SIGINT: a flag the main thread polls.  Handlers only set flags and queue work: they
    interrupt the main thread anywhere, even inside a lock that logging or an event would need."""

    def __init__(self, options: RunOptions, hub: bool = True) -> None:
        from controller.waiting import PollingSignal

        self.flag = PollingSignal(None if hub else time.sleep)  # --no-switch: no os-ken, no hub
        self.received: list[int] = []
        self.reload: Any = None  # what SIGHUP does, once there is an agent
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._hup)
        if options.pidfile:
            Path(options.pidfile).write_text(f"{os.getpid()}\n")

    def _stop(self, signum: int, _frame: object) -> None:
        self.received.append(signum)
        self.flag.set()

    def _hup(self, _signum: int, _frame: object) -> None:
        if self.reload is not None:
            self.reload()

    def is_set(self) -> bool:
        return bool(self.flag.is_set())

    def wait_forever(self) -> None:
        while not self.flag.is_set():
            self.flag.wait(timeout=0.5)
        LOG.info("received %s: stopping", signal.Signals(self.received[0]).name)


def _neutron_source(options: RunOptions, no_switch: bool) -> tuple[Any, Any] | int:
    """The Neutron source of `brtun run --neutron`, configured from Neutron's agent files, or an exit status."""
    from flows.checker import NAME_PATTERN

    if not NAME_PATTERN.fullmatch(options.host):
        LOG.error("--host %r: a host name is 1-64 letters, digits, '_', '.' or '-'", options.host)
        return EXIT_BAD_INPUT
    from controller.neutronrpc import BadOptions, NeutronRpc, load_settings
    from controller.neutronsource import NeutronSource

    try:
        settings = load_settings(options.neutron, options.host)
    except BadOptions as error:
        for problem in error.problems:
            LOG.error("--neutron: %s", problem)
        return EXIT_BAD_INPUT
    LOG.info("brtun agent for host %s, driven by Neutron at %s: tunnel endpoint %s (%s), l2population %s",
             options.host, _redacted(settings.transport_url), settings.local.local_ip,
             ", ".join(settings.local.tunnel_types), "on" if settings.local.options.l2_population else "off")
    return settings, NeutronSource(settings, NeutronRpc(settings), no_switch=no_switch)


def _redacted(url: str) -> str:
    from controller.neutronsource import redact

    return redact(url)


def _run_neutron(options: RunOptions) -> int:
    import warnings

    # oslo's libraries import eventlet, which announces its own deprecation on import.
    warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")
    if options.no_switch:  # plain threads: no os-ken, no switch, no eventlet patching
        stop = _Stop(options, hub=False)
        made = _neutron_source(options, no_switch=True)
        if isinstance(made, int):
            return made
        settings, source = made
        return _run_no_switch(options, settings, source, stop)
    select_hub(options.hub)  # eventlet patches first: oslo.messaging's threads are then green, as in Neutron
    stop = _Stop(options)
    made = _neutron_source(options, no_switch=False)
    if isinstance(made, int):
        return made
    settings, source = made
    stop.reload = lambda: source.request_resync("SIGHUP")
    url = _redacted(settings.transport_url)
    # The agent is made with this host alone (no network yet) and opens only its database, where the VIFs
    # Nova plugged are; it starts once the first resync has settled, with all Neutron said.
    return _serve(options, stop, lambda: (source.config(), None, source.origin_text(), url), source)


def _run_no_switch(options: RunOptions, settings: Any, source: Any, stop: _Stop) -> int:
    from controller.changes import Change
    from controller.computeonly import ComputeOnly
    from controller.running import Origin

    url = _redacted(settings.transport_url)
    stop.reload = lambda: source.request_resync("SIGHUP")
    status = EXIT_OK
    try:
        if source.start(stop.is_set):
            config = source.config()
            target = ComputeOnly(config, options.host, Origin(source.origin_text(), neutron=url))
            LOG.info("no switch: computing br-tun only (%d flows now)", len(target.held["br-tun"]))

            def apply(new: Any, why: str) -> dict[str, Any]:
                return Change.to(target, new, Origin(source.origin_text(), neutron=url)).apply(target)

            source.attach(apply, config)
            stop.wait_forever()
    except Exception:
        LOG.exception("the agent failed")
        status = EXIT_FAILED
    finally:
        source.stop()
    return _exit(options, status)


def _exit(options: RunOptions, status: int) -> int:
    if options.pidfile:
        Path(options.pidfile).unlink(missing_ok=True)
    logging.shutdown()
    os._exit(status)


def _serve(options: RunOptions, stop: _Stop, initial: Any, source: Any = None) -> int:
    """The agent with its switches: os-ken, the control socket, metrics; until SIGTERM."""
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
    # isort: on

    cfg.CONF(args=[], project="os_ken", default_config_files=[])
    controller = options.listen.target(tls=options.tls is not None)
    metrics = Metrics()
    config, config_path, config_text, neutron = initial()
    agent = Agent(AgentSettings(config, options.host, options.ovsdb, controller, options.datapath_type,
                                config_path=config_path, config_text=config_text,
                                takeover=options.takeover, takeover_cookies=options.takeover_cookies,
                                neutron=neutron), metrics)
    sandbox = Sandbox()
    operations = Operations(agent, sandbox)
    control = ControlServer(options.control_socket, operations.handle) if options.control_socket else None
    if source is None:
        stop.reload = operations.sighup
    elif not _first_sync(agent, source, stop, neutron):
        source.stop()
        return _exit(options, EXIT_OK)

    listener = OpenFlowListener(options.listen, options.tls, lambda reason: metrics.refused.labels(reason).inc())
    try:
        listener.bind()
    except OSError as error:
        LOG.error("cannot listen for OpenFlow on %s: %s", controller, error.strerror or error)
        if source is not None:
            source.stop()
        return _exit(options, EXIT_FAILED)
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
        if source is not None:
            _attach(agent, source, agent.config, neutron)
        stop.wait_forever()
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
        if source is not None:
            source.stop()
        listener.close()
        agent.stop()
        sandbox.close()
    # The hub's server threads block in accept() and cannot be joined on the
    # native hub; everything of ours is stopped, so leave without waiting.
    return _exit(options, status)


def _first_sync(agent: Any, source: Any, stop: _Stop, neutron: str) -> bool:
    """The Neutron source's first resync, with the VIFs of the agent's database; then the agent runs what it
    learned.  False if stopped first."""
    from controller.running import Origin

    agent.open()
    source.set_vifs(agent.vifs())
    if not source.start(stop.is_set):
        return False
    agent.adopt(source.config(), Origin(source.origin_text(), neutron=neutron))
    return True


def _attach(agent: Any, source: Any, config: Any, neutron: str) -> None:
    """The Neutron source's configs become changes on the agent's worker, as `brtun apply` does."""
    from controller.changes import Change
    from controller.running import Origin

    def apply(new: Any, why: str) -> dict[str, Any]:
        origin = Origin(source.origin_text(), neutron=neutron)
        return agent.call(lambda: Change.to(agent, new, origin).apply(agent))  # type: ignore[no-any-return]

    agent.describe_source(source.info)
    agent.watch_vifs(source.set_vifs)
    source.attach(apply, config)
