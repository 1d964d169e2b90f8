"""Pure br-tun flow-table logic: values and functions; no sockets, processes or os-ken runtime.

config (YAML) -> flows.config -> flows.model -> flows.pipeline -> desired flows
-> flows.diff against what the switch holds -> ordered changes.

The bottom layer. May import: only itself, the standard library, PyYAML and
Open vSwitch's `ovs.flow` parser; no os-ken, nothing of brtun's other
packages.  Files are read only by the explicit loaders: config.load_config,
and replay.load_case for a case file (whose configs it loads through
load_config).
"""
