"""Mininet testbeds that rebuild the seed's network (or an N-host mesh) under brtun agents.

The `testbed:` section of a config (`spec`), the Mininet node classes
(`nodes`), the build (`topology`), Neutron's services around br-int
(`services`), the checks that send real packets (`checks`, `probes`) and
the testbed commands (`cli`: `brtun testbed`, `brtun demo`).  Each host's
switch and agent are ovshost's processes: an agent is a `brtun run`
process, never an import.

May import: flows, ovshost and Mininet (`nodes`, `topology` and `safecli`
import it, `checks` through `topology`; `cli` imports those only when a
command needs them).  Never controller/.
"""
