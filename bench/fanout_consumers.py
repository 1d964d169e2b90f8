"""The floor of bench/bench_neutron.py: N plain consumers of l2population's fanout, nothing else.

    python bench/fanout_consumers.py TRANSPORT_URL N OUTPUT

Each consumer is an oslo.messaging RPC server on Neutron's l2population
topic with a server name of its own (so a fanout queue of its own, as each
agent has), whose endpoint only writes down when each add_fdb_entries
arrived and which MACs it carried: what Neutron's own fanout costs, without
any agent's work.  One line per message to OUTPUT: "CONSUMER TIME MAC...".
"""

from __future__ import annotations

import sys
import threading
import time
import warnings

with warnings.catch_warnings():  # eventlet's deprecation notice, on import
    warnings.simplefilter("ignore")
    import oslo_messaging
    from oslo_config import cfg

TOPIC = "q-agent-notifier-l2population-update"


class Consumer:
    target = oslo_messaging.Target(version="1.7")

    def __init__(self, index: int, out: list[str], lock: threading.Lock) -> None:
        self.index, self.out, self.lock = index, out, lock

    def add_fdb_entries(self, context: object, **kwargs: object) -> None:
        arrived = time.time()
        macs = [pair[0] for network in dict(kwargs.get("fdb_entries") or {}).values()  # type: ignore[call-overload]
                for pairs in network.get("ports", {}).values() for pair in pairs]
        with self.lock:
            self.out.append(f"{self.index} {arrived:.6f} {' '.join(macs)}\n")

    def remove_fdb_entries(self, context: object, **kwargs: object) -> None:
        pass

    def update_fdb_entries(self, context: object, **kwargs: object) -> None:
        pass


def main(argv: list[str]) -> int:
    url, count, output = argv[0], int(argv[1]), argv[2]
    oslo_messaging.set_transport_defaults(control_exchange="neutron")
    cfg.CONF(args=[], project="brtun-bench")
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=url)
    out: list[str] = []
    lock = threading.Lock()
    servers = []
    for index in range(count):
        server = oslo_messaging.get_rpc_server(transport, oslo_messaging.Target(topic=TOPIC, server=f"floor-{index}"),
                                               [Consumer(index, out, lock)], executor="threading")
        server.start()
        servers.append(server)
    print("ready", flush=True)
    with open(output, "a", encoding="utf-8") as stream:
        while True:  # until the benchmark stops this process (SIGTERM, by its PID)
            time.sleep(0.05)
            with lock:
                lines, out[:] = list(out), []
            stream.writelines(lines)
            stream.flush()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
