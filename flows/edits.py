"""Run-time edits of a config: add or remove a network, a port, a tunnel endpoint.

These are what Neutron's server tells its agents over RPC (a network
appears, l2population announces a port or a new tunnel endpoint).  An edit
turns the config's text into new text; the agent then validates that text
exactly as it validates a config file and applies it the same way, so an
edit can never produce a state a config file could not describe.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import yaml

from flows import naming, yamlsource

Raw = dict[str, Any]


class EditError(ValueError):
    """The edit itself makes no sense (before any validation of the result)."""


def _text_arg(args: dict[str, Any], name: str, required: bool = True) -> Any:
    value = args.get(name)
    if value is None and required:
        raise EditError(f"missing argument {name!r}")
    return value


def _host(raw: Raw, name: str) -> Raw:
    hosts = raw.get("hosts") or {}
    if name not in hosts:
        raise EditError(f"no host {name!r} (hosts: {', '.join(map(str, hosts)) or 'none'})")
    host: Raw = hosts[name]
    return host


def add_network(raw: Raw, host: str, args: dict[str, Any]) -> None:
    name = _text_arg(args, "name")
    networks = raw.setdefault("networks", {})
    if name in networks:
        raise EditError(f"network {name!r} exists already")
    networks[name] = {"type": _text_arg(args, "type"), "segmentation_id": _text_arg(args, "segmentation_id")}
    vlan = args.get("local_vlan")
    if vlan is not None:
        _host(raw, host).setdefault("local_vlans", {})[name] = vlan


def remove_network(raw: Raw, host: str, args: dict[str, Any]) -> None:
    """The network and every port on it, on every host (Neutron deletes its ports first)."""
    name = _text_arg(args, "name")
    if name not in (raw.get("networks") or {}):
        raise EditError(f"no network {name!r}")
    del raw["networks"][name]
    types_left = {str(n.get("type")) for n in raw["networks"].values() if isinstance(n, dict)}
    for entry in (raw.get("hosts") or {}).values():
        entry["ports"] = [p for p in entry.get("ports") or [] if p.get("network") != name]
        if entry.get("carries"):
            entry["carries"] = [n for n in entry["carries"] if n != name]
        (entry.get("local_vlans") or {}).pop(name, None)
        ofports = entry.get("ofports") or {}
        for port in list(ofports):  # a pinned number for a tunnel type no network uses any more
            kind = naming.tunnel_type_of(str(port))
            if kind is not None and kind not in types_left:
                del ofports[port]


def add_port(raw: Raw, host: str, args: dict[str, Any]) -> None:
    target = args.get("host") or host
    port = {"network": _text_arg(args, "network"), "mac": _text_arg(args, "mac")}
    for optional in ("ip", "name"):
        if args.get(optional) is not None:
            port[optional] = args[optional]
    _host(raw, target).setdefault("ports", []).append(port)


def remove_port(raw: Raw, host: str, args: dict[str, Any]) -> None:
    target = args.get("host") or host
    mac = str(_text_arg(args, "mac")).lower()
    entry = _host(raw, target)
    ports = entry.get("ports") or []
    kept = [p for p in ports if str(p.get("mac", "")).lower() != mac]
    if len(kept) == len(ports):
        raise EditError(f"host {target!r} has no port with MAC {mac}")
    entry["ports"] = kept


def add_endpoint(raw: Raw, host: str, args: dict[str, Any]) -> None:
    """A remote host (a tunnel endpoint) joins: its name, address and tunnel types."""
    name = _text_arg(args, "name")
    hosts = raw.setdefault("hosts", {})
    if name in hosts:
        raise EditError(f"host {name!r} exists already")
    local_ip = _text_arg(args, "local_ip")
    entry: Raw = {"local_ip": local_ip, "tunnel_types": args.get("tunnel_types") or ["gre"]}
    datapath_id = args.get("datapath_id")
    if datapath_id is None:  # the remote's bridges are not ours: any unique ID will do
        try:
            datapath_id = 0xE0 << 56 | int(ipaddress.IPv4Address(local_ip))
        except ValueError:
            datapath_id = 0xE0 << 56
    entry["datapath_id"] = datapath_id if isinstance(datapath_id, str) else hex(datapath_id)
    hosts[name] = entry


def remove_endpoint(raw: Raw, host: str, args: dict[str, Any]) -> None:
    name = _text_arg(args, "name")
    if name == host:
        raise EditError(f"{name!r} is this agent's own host")
    if name not in (raw.get("hosts") or {}):
        raise EditError(f"no host {name!r}")
    del raw["hosts"][name]


# Each edit's arguments and the JSON types each may have (bool is never an int here).
ARGUMENTS: dict[str, dict[str, tuple[type, ...]]] = {
    "add-network": {"name": (str,), "type": (str,), "segmentation_id": (int,), "local_vlan": (int,)},
    "remove-network": {"name": (str,)},
    "add-port": {"network": (str,), "mac": (str,), "ip": (str,), "name": (str,), "host": (str,)},
    "remove-port": {"mac": (str,), "host": (str,)},
    "add-endpoint": {"name": (str,), "local_ip": (str,), "tunnel_types": (list,), "datapath_id": (int, str)},
    "remove-endpoint": {"name": (str,)},
}
_TYPE_NAMES = {str: "a string", int: "a whole number", list: "a list of strings"}


def check_arguments(edit: str, args: object) -> None:
    """EditError unless `args` are the edit's known arguments, each of its type (null: not given)."""
    known = ARGUMENTS.get(edit)
    if known is None:
        raise EditError(f"unknown edit {edit!r} (known: {', '.join(ARGUMENTS)})")
    if not isinstance(args, dict):
        raise EditError("the edit's arguments must be a JSON object")
    unknown = sorted(str(name) for name in args if name not in known)
    if unknown:
        raise EditError(f"unknown argument {', '.join(unknown)} (known: {', '.join(known)})")
    for name, value in args.items():
        types = known[name]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types) or \
                (isinstance(value, list) and not all(isinstance(item, str) for item in value)):
            expected = " or ".join(_TYPE_NAMES[t] for t in types)
            raise EditError(f"argument {name!r} must be {expected}, not {type(value).__name__} "
                            f"{json_text(value)}")


def json_text(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


EDITS: dict[str, Callable[[Raw, str, dict[str, Any]], None]] = {
    "add-network": add_network,
    "remove-network": remove_network,
    "add-port": add_port,
    "remove-port": remove_port,
    "add-endpoint": add_endpoint,
    "remove-endpoint": remove_endpoint,
}


def apply_edit(text: str, host: str, edit: str, args: dict[str, Any]) -> str:
    """The config text after `edit`; raises EditError for an edit that cannot apply."""
    check_arguments(edit, args)
    action = EDITS[edit]
    try:
        raw = yamlsource.load(text).data
    except yamlsource.YamlError as error:
        raise EditError(f"the current config cannot be read: {error}") from None
    if not isinstance(raw, dict):
        raise EditError("the current config is not a mapping")
    action(raw, host, args)
    try:
        return yaml.safe_dump(raw, sort_keys=False)
    except yaml.YAMLError as error:
        raise EditError(f"the edited config cannot be written: {error}") from None
