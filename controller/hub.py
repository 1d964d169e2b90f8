"""The one place that chooses os-ken's hub.

os-ken reads OSKEN_HUB_TYPE when `os_ken.lib.hub` is first imported, and
eventlet must monkey-patch the standard library before anything else opens
sockets or starts threads, so this runs before any os-ken, ovs or ovsdbapp
import.  The design card names eventlet (as Neutron's agent runs); os-ken
4's own default, the native thread hub, is kept working too.
"""

from __future__ import annotations

import os
import sys
import warnings

HUBS = ("eventlet", "native")
DEFAULT_HUB = "eventlet"


def select_hub(kind: str = DEFAULT_HUB) -> str:
    if kind not in HUBS:
        raise ValueError(f"unknown hub {kind!r}; choose one of {', '.join(HUBS)}")
    loaded = sys.modules.get("os_ken.lib.hub")
    if loaded is not None:
        if kind != loaded.HUB_TYPE:
            raise RuntimeError(f"os-ken's hub is already {loaded.HUB_TYPE}; cannot switch to {kind}")
        return kind
    os.environ["OSKEN_HUB_TYPE"] = kind
    # eventlet announces its own deprecation on import; the choice is deliberate.
    warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")
    if kind == "eventlet":
        # eventlet's green DNS resolver (dnspython, 80 ms of every start) would only matter for
        # names; the agent listens and connects on addresses and unix sockets.
        os.environ.setdefault("EVENTLET_NO_GREENDNS", "yes")
        # Everything green, threads included, as Neutron's agent runs: the
        # OVSDB client's thread and its select() must yield to the hub.
        # (os-ken's hub.patch(thread=True) would patch threads *only*.)
        import eventlet

        eventlet.monkey_patch()
    from os_ken.lib import hub

    assert kind == hub.HUB_TYPE
    return kind
