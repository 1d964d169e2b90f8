"""The agent's Prometheus metrics, in a registry of its own (one agent, one registry).

Served over HTTP on 127.0.0.1 only: they describe tenants' networks.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.flows_desired = Gauge("brtun_flows_desired", "Flows the pipeline wants, per bridge",
                                   ["bridge"], registry=r)
        self.flows_installed = Gauge("brtun_flows_installed",
                                     "Flows read back from the switch at the last reconcile, by owner",
                                     ["bridge", "owner"], registry=r)
        self.flow_mods = Counter("brtun_flow_mods", "Flow-mods sent, by kind", ["bridge", "kind"], registry=r)
        self.openflow_errors = Counter("brtun_openflow_errors", "OpenFlow errors received",
                                       ["bridge"], registry=r)
        self.connections = Counter("brtun_switch_connections", "OpenFlow connections accepted",
                                   ["bridge"], registry=r)
        self.conflicts = Counter("brtun_switch_conflicts", "Connections that claimed the datapath ID of a "
                                 "connected bridge: refused, the established one kept", ["bridge"], registry=r)
        self.refused = Counter("brtun_openflow_refused", "OpenFlow connections refused before the handshake, "
                               "by reason (user, unproven, tls)", ["reason"], registry=r)
        self.connected = Gauge("brtun_switch_connected", "1 while the bridge is connected", ["bridge"],
                               registry=r)
        self.reconcile_seconds = Histogram(
            "brtun_reconcile_seconds", "Read back, diff, send, barrier", ["bridge"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.repairs = Counter("brtun_repairs", "Reconciles that found the switch changed behind our back",
                               ["bridge", "reason"], registry=r)
        self.learned_macs = Gauge("brtun_learned_macs", "MACs learned in br-tun table 20, per network",
                                  ["network"], registry=r)
        self.config_changes = Counter("brtun_config_changes", "Config changes asked for, by outcome",
                                      ["outcome"], registry=r)

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        start_http_server(port, addr=address, registry=self.registry)
