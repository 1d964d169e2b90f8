"""Casts on a testbed's RabbitMQ exactly as neutron-server casts them (run in the controller namespace).

The fault tests use it to send what a real server would send again (duplicates), in another order, or
what no server should send (malformed entries, unknown networks): the agents must take each as the
Neutron source promises (docs/NEUTRON.md, "What Neutron says").

    python -m tests.integration.neutronbus TRANSPORT_URL MESSAGES.json

MESSAGES.json: a list of {"topic": "q-agent-notifier-l2population-update", "method": "add_fdb_entries",
"kwargs": {...}, "server": null (fanout) or a host name, "pause": seconds after}.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

with warnings.catch_warnings():  # eventlet's deprecation notice, on import
    warnings.simplefilter("ignore")
    import oslo_messaging
    from oslo_config import cfg


def main(argv: list[str]) -> int:
    url, path = argv
    with open(path, encoding="utf-8") as stream:
        messages = json.load(stream)
    oslo_messaging.set_transport_defaults(control_exchange="neutron")  # as neutron-lib sets it for the server
    cfg.CONF(args=[], project="brtun-tests")
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=url)
    client = oslo_messaging.get_rpc_client(transport, oslo_messaging.Target(topic="q-agent-notifier", version="1.0"))
    for message in messages:
        server = message.get("server")
        prepared = client.prepare(topic=message["topic"], fanout=server is None, server=server,
                                  version=message.get("version", "1.0"))
        prepared.cast({}, message["method"], **message["kwargs"])
        time.sleep(message.get("pause", 0))
    time.sleep(0.2)  # let the last casts leave before the connection closes
    transport.cleanup()
    print(f"cast {len(messages)} messages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
