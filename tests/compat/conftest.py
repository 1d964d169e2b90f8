"""Fixtures of the Neutron compatibility suite: one private Open vSwitch to print Neutron's flows.

Neutron itself must be installed (`pip install -e '.[compat]'`, which
`./run setup` does); without it, or without root and Open vSwitch, these
tests fail saying what is missing, as the integration tests do.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from ovshost.privateovs import PrivateOvs
from tests.integration.conftest import RUN_ROOT, private_ovs, require_environment  # noqa: F401 (a fixture)


@pytest.fixture(scope="session")
def neutron_switch() -> Iterator[object]:
    require_environment()
    try:
        from tests.compat.switch import NeutronSwitch
    except ImportError as error:
        pytest.fail(f"the compatibility suite needs Neutron: pip install -e '.[compat]' ({error})", pytrace=False)
    name = f"brtun-compat-{uuid.uuid4().hex[:6]}"
    ovs = PrivateOvs(name, RUN_ROOT / name)
    try:
        ovs.start(vswitchd_args=("--enable-dummy",))
        yield NeutronSwitch(ovs)
    finally:
        ovs.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The counts CI prints: how many configs, hosts and flows were compared with Neutron's."""
    from tests.compat.check import TALLY

    if not TALLY.steps:
        return
    terminalreporter.write_sep("-", "Neutron compatibility")
    terminalreporter.write_line(
        f"{len(TALLY.configs)} configs, {TALLY.steps} states, {TALLY.hosts} hosts compared with Neutron 29's agent: "
        f"{TALLY.flows} flows, {TALLY.ports} tunnel ports")
    terminalreporter.write_line(
        f"departures counted (docs/PIPELINE.md, Flood lists): Neutron's flood flows output "
        f"{TALLY.flood.toward_hosts_without_the_network} times toward hosts that do not carry the network and "
        f"{TALLY.flood.to_ports_that_are_gone} times to tunnel ports that are gone")
    for departure in TALLY.departures:
        terminalreporter.write_line(f"departure asserted: {departure}")
