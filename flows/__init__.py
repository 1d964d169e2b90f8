"""Pure br-tun flow-table logic: values and functions, no I/O and no os-ken runtime.

config (YAML) -> flows.config -> flows.model -> flows.pipeline -> desired flows
-> flows.diff against what the switch holds -> ordered changes.
"""
