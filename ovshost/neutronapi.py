"""The Neutron REST API, as a tenant (or Nova) uses it: networks, subnets, ports bound to hosts.

Requests go over the API's unix socket (ovshost.neutronserver), so they work
from any network namespace.  Without Keystone (auth_strategy = noauth) the
project is a header and a field of every create body; noauth requests are
admin, so provider attributes and port bindings can be set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovshost.neutronserver import api_request

PROJECT = "demo"


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        detail = body.get("NeutronError", body) if isinstance(body, dict) else body
        super().__init__(f"{method} {path}: {status}: {detail}"[:600])
        self.status = status


@dataclass
class NeutronApi:
    socket: Path
    project: str = PROJECT

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        status, reply = api_request(self.socket, method, path, body, self.project)
        if status >= 300:
            raise ApiError(method, path, status, reply)
        return reply

    def create_network(self, name: str, network_type: str, segmentation_id: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "project_id": self.project, "provider:network_type": network_type}
        if segmentation_id is not None:
            body["provider:segmentation_id"] = segmentation_id
        return dict(self.request("POST", "/v2.0/networks", {"network": body})["network"])

    def create_subnet(self, network_id: str, cidr: str, gateway: str | None, dhcp: bool = True) -> dict[str, Any]:
        body = {"network_id": network_id, "project_id": self.project, "cidr": cidr, "ip_version": 4,
                "gateway_ip": gateway, "enable_dhcp": dhcp}
        return dict(self.request("POST", "/v2.0/subnets", {"subnet": body})["subnet"])

    def create_port(self, network_id: str, mac: str, ip: str | None, host: str | None,
                    device_owner: str = "compute:nova", device_id: str = "", name: str = "") -> dict[str, Any]:
        """A port with the given MAC and fixed IP, bound to `host` (binding:host_id, as Nova binds it)."""
        body: dict[str, Any] = {"network_id": network_id, "project_id": self.project, "mac_address": mac,
                                "device_owner": device_owner, "device_id": device_id, "name": name}
        if ip is not None:
            body["fixed_ips"] = [{"ip_address": ip}]
        if host is not None:
            body["binding:host_id"] = host
        return dict(self.request("POST", "/v2.0/ports", {"port": body})["port"])

    def bind_port(self, port_id: str, host: str) -> dict[str, Any]:
        return dict(self.request("PUT", f"/v2.0/ports/{port_id}", {"port": {"binding:host_id": host}})["port"])

    def delete_port(self, port_id: str) -> None:
        self.request("DELETE", f"/v2.0/ports/{port_id}")

    def delete_network(self, network_id: str) -> None:
        self.request("DELETE", f"/v2.0/networks/{network_id}")

    def port(self, port_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v2.0/ports/{port_id}")["port"])

    def ports(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{key}={value}" for key, value in filters.items())
        return list(self.request("GET", "/v2.0/ports" + (f"?{query}" if query else ""))["ports"])

    def agents(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v2.0/agents")["agents"])

    def wait_agents(self, hosts: list[str], timeout: float = 60) -> float:
        """Until each host has an Open vSwitch agent the server thinks alive; seconds waited."""
        started = time.monotonic()
        while True:
            alive = {a["host"] for a in self.agents() if a.get("alive") and a.get("agent_type") == "Open vSwitch agent"}
            if set(hosts) <= alive:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"no live Open vSwitch agent on {', '.join(sorted(set(hosts) - alive))} "
                                   f"after {timeout:.0f} s")
            time.sleep(0.2)

    def wait_status(self, port_id: str, status: str = "ACTIVE", timeout: float = 60) -> float:
        """Until the port has the status (an agent reported it up); seconds waited."""
        started = time.monotonic()
        while True:
            current = self.port(port_id)["status"]
            if current == status:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"port {port_id} is {current}, not {status}, after {timeout:.0f} s")
            time.sleep(0.1)
