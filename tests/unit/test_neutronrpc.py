"""brtun run --neutron's options: Neutron's agent config files, read with Neutron's option names."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():  # oslo's libraries' deprecation notices (eventlet, webob), on import
    warnings.simplefilter("ignore")
    from controller.neutronrpc import BadOptions, load_settings
    from controller.neutronsource import redact
from tests.conftest import PROJECT

NEUTRON_CONF = """[DEFAULT]
transport_url = rabbit://neutron:secret@192.168.100.5:5672/
rpc_response_timeout = 10
"""
AGENT_INI = """[ovs]
local_ip = 192.168.100.11
[agent]
tunnel_types = vxlan,gre
l2_population = true
arp_responder = true
dscp = 10
vxlan_udp_port = 4790
report_interval = 4
[brtun]
datapath_id = 0xb01
"""


def files(tmp_path: Path, agent: str = AGENT_INI, neutron: str = NEUTRON_CONF) -> list[str]:
    (tmp_path / "neutron.conf").write_text(neutron)
    (tmp_path / "openvswitch_agent.ini").write_text(agent)
    return [str(tmp_path / "neutron.conf"), str(tmp_path / "openvswitch_agent.ini")]


def test_neutrons_own_files_and_option_names_make_the_agents_settings(tmp_path: Path) -> None:
    settings = load_settings(files(tmp_path), "compute1")
    local = settings.local
    assert (local.name, local.local_ip, local.tunnel_types, local.datapath_id) == \
        ("compute1", "192.168.100.11", ("gre", "vxlan"), 0xB01)
    options = local.options
    assert options.l2_population and options.arp_responder and options.dscp == 10 and options.vxlan_udp_port == 4790
    assert settings.report_interval == 4 and settings.rpc_timeout == 10
    assert redact(settings.transport_url) == "rabbit://neutron:***@192.168.100.5:5672/"


def test_an_ipv6_tunnel_endpoint_is_taken_in_canonical_form(tmp_path: Path) -> None:
    agent = AGENT_INI.replace("local_ip = 192.168.100.11", "local_ip = fd00:100:0::b")
    local = load_settings(files(tmp_path, agent), "compute1").local
    assert local.local_ip == "fd00:100::b" and local.ip_version == 6


def test_the_arp_responder_without_l2population_is_off_as_in_neutron_and_datapath_ids_default(tmp_path: Path) -> None:
    agent = AGENT_INI.replace("l2_population = true", "l2_population = false").replace("datapath_id = 0xb01", "")
    local = load_settings(files(tmp_path, agent), "compute1").local
    assert not local.options.arp_responder
    assert local.datapath_id == 0xB7 << 32 | 0xC0A8640B  # 0xb7 << 32 | 192.168.100.11


@pytest.mark.parametrize(("agent", "neutron", "problem"), [
    (AGENT_INI.replace("local_ip = 192.168.100.11", ""), NEUTRON_CONF, "[ovs] local_ip"),
    (AGENT_INI.replace("local_ip = 192.168.100.11", "local_ip = fe80::1"), NEUTRON_CONF, "[ovs] local_ip"),
    (AGENT_INI.replace("vxlan,gre", "vlan"), NEUTRON_CONF, "[agent] tunnel_types"),
    (AGENT_INI.replace("dscp = 10", "dscp_inherit = true\n[agent]\ndscp = 10"), NEUTRON_CONF, "dscp"),
    (AGENT_INI.replace("0xb01", "eleven"), NEUTRON_CONF, "[brtun] datapath_id"),
    (AGENT_INI, "[DEFAULT]\ntransport_url = nonsense\n", "transport_url"),
])
def test_options_brtun_cannot_run_with_are_each_said(tmp_path: Path, agent: str, neutron: str, problem: str) -> None:
    with pytest.raises(BadOptions) as refused:
        load_settings(files(tmp_path, agent, neutron), "compute1")
    assert any(problem in line for line in refused.value.problems), refused.value.problems


def test_brtun_run_with_bad_neutron_options_exits_2_saying_why(tmp_path: Path) -> None:
    paths = files(tmp_path, AGENT_INI.replace("local_ip = 192.168.100.11", ""))
    result = subprocess.run([sys.executable, "-m", "controller.cli", "run", "--neutron", paths[0], "--neutron",
                             paths[1], "--host", "compute1"], capture_output=True, text=True, cwd=PROJECT, timeout=60)
    assert result.returncode == 2 and "[ovs] local_ip must be" in result.stderr
    both = subprocess.run([sys.executable, "-m", "controller.cli", "run", "x.yaml", "--neutron", paths[0], "--host",
                           "h"], capture_output=True, text=True, cwd=PROJECT, timeout=60)
    assert both.returncode == 2 and "one of the two" in both.stderr
