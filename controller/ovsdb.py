"""The switch database, through ovsdbapp (the OVSDB client Neutron uses).

`observe()` reads a consistent snapshot (bridges, ports, interfaces in one
transaction); `apply()` carries out a `controller.dbplan.Plan` in one
transaction, so the database sees all of a change or none of it.
"""

from __future__ import annotations

import logging
from typing import Any

from ovsdbapp.backend.ovs_idl import connection
from ovsdbapp.schema.open_vswitch import impl_idl

from controller.dbplan import (
    PROTOCOLS,
    AddPort,
    DeletePort,
    EnsureBridge,
    FixPort,
    Observed,
    ObservedBridge,
    ObservedPort,
    Operation,
    SetTag,
)

LOG = logging.getLogger("brtun.ovsdb")


class SwitchDatabase:
    def __init__(self, target: str, timeout: float = 10) -> None:
        self.target = target
        idl = connection.OvsdbIdl.from_server(target, "Open_vSwitch")
        self._idl = idl
        self.api = impl_idl.OvsdbIdl(connection.Connection(idl=idl, timeout=timeout))

    @property
    def change_seqno(self) -> int:
        """Grows whenever the local replica changes: cheap to poll."""
        return int(self._idl.change_seqno)

    def observe(self) -> Observed:
        with self.api.transaction(check_error=True) as txn:
            bridges = txn.add(self.api.db_list(
                "Bridge", columns=["name", "datapath_type", "fail_mode", "protocols", "other_config",
                                   "controller", "ports"]))
            ports = txn.add(self.api.db_list("Port", columns=["_uuid", "name", "tag", "interfaces",
                                                              "external_ids"]))
            interfaces = txn.add(self.api.db_list(
                "Interface", columns=["_uuid", "name", "type", "options", "ofport", "external_ids"]))
            controllers = txn.add(self.api.db_list("Controller", columns=["_uuid", "target"]))
        targets = {row["_uuid"]: row["target"] for row in controllers.result}
        iface_by_uuid = {row["_uuid"]: row for row in interfaces.result}
        port_by_uuid = {row["_uuid"]: row for row in ports.result}
        seen_bridges: dict[str, ObservedBridge] = {}
        seen_ports: dict[str, ObservedPort] = {}
        for row in bridges.result:
            seen_bridges[row["name"]] = ObservedBridge(
                row["name"], row["datapath_type"], _optional(row["fail_mode"]), tuple(row["protocols"]),
                dict(row["other_config"]), tuple(targets.get(u, "") for u in _refs(row["controller"])))
            for port_uuid in _refs(row["ports"]):
                port = port_by_uuid.get(port_uuid)
                if port is None:
                    continue
                ifaces = [iface_by_uuid[u] for u in _refs(port["interfaces"]) if u in iface_by_uuid]
                iface = ifaces[0] if ifaces else {"type": "", "options": {}, "ofport": [], "external_ids": {}}
                seen_ports[port["name"]] = ObservedPort(
                    port["name"], row["name"], iface["type"], dict(iface["options"]),
                    _optional(iface["ofport"]), _optional(port["tag"]),
                    {**iface["external_ids"], **port["external_ids"]})
        return Observed(seen_bridges, seen_ports)

    def apply(self, operations: tuple[Operation, ...] | list[Operation]) -> None:
        """All operations in one transaction; raises if the database refuses any of them."""
        if not operations:
            return
        with self.api.transaction(check_error=True) as txn:
            for operation in operations:
                for command in self._commands(operation):
                    txn.add(command)

    def _commands(self, operation: Operation) -> list[Any]:
        api = self.api
        if isinstance(operation, EnsureBridge):
            spec = operation.spec
            commands = []
            if operation.create:
                commands.append(api.add_br(spec.name, may_exist=True, datapath_type=spec.datapath_type))
            commands += [
                api.db_set("Bridge", spec.name, ("fail_mode", "secure"), ("protocols", list(PROTOCOLS))),
                api.db_set("Bridge", spec.name, ("other_config", spec.other_config)),
            ]
            if operation.set_controller:
                # Neutron's controllers connect out-of-band.
                controller = api.db_create("Controller", target=spec.controller,
                                           connection_mode="out-of-band")
                commands += [controller, api.db_set("Bridge", spec.name, ("controller", [controller]))]
            return commands
        if isinstance(operation, (AddPort, FixPort)):
            spec = operation.spec
            settings: list[tuple[str, Any]] = [("type", spec.type), ("options", dict(spec.options))]
            if spec.ofport_request is not None and isinstance(operation, AddPort):
                settings.append(("ofport_request", spec.ofport_request))
            commands = []
            if isinstance(operation, AddPort):
                commands.append(api.add_port(spec.bridge, spec.name, may_exist=True))
            else:  # replace the options, do not merge stale ones in
                commands.append(api.db_clear("Interface", spec.name, "options"))
            commands += [api.db_set("Interface", spec.name, *settings),
                         api.db_set("Port", spec.name, ("external_ids", {"brtun": operation.owner}))]
            return commands
        if isinstance(operation, DeletePort):
            return [api.del_port(operation.name, bridge=operation.bridge, if_exists=True)]
        if isinstance(operation, SetTag):
            return [api.db_set("Port", operation.name, ("tag", operation.tag))]
        raise TypeError(f"unknown operation {operation!r}")

    def retarget_controller(self, bridge: str, target: str) -> None:
        """Give `bridge` a new Controller row with `target`, in one transaction (the bridge is never
        without a controller, so the switch keeps its flows); returns once ovs-vswitchd applied it."""
        api = self.api
        with api.transaction(check_error=True) as txn:
            controller = txn.add(api.db_create("Controller", target=target, connection_mode="out-of-band"))
            txn.add(api.db_set("Bridge", bridge, ("controller", [controller])))

    def close(self) -> None:
        try:
            self.api.ovsdb_connection.stop()
        except Exception:  # already gone: the process is ending anyway
            LOG.debug("closing the database connection failed", exc_info=True)


def _optional(value: Any) -> Any:
    """OVSDB optional columns come as [] or [value]."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _refs(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [value] if value else []
