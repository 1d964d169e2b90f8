"""The exit statuses of every `brtun` command, as `diff` and `grep` use them.

Here, in the lowest layer, so that the agent's commands (controller/) and
the testbeds' (mininet_topos/) share one definition.
"""

EXIT_OK = 0
# The command ran and the answer is no: the flows differ (diff), a packet was
# not delivered (trace), a replayed packet did not do what its case expects
# (replay), a check failed (demo), an agent was unreachable or failed to apply
# (apply, state, edit; the others rolled back).
EXIT_FAILED = 1
# Nothing was done: an invalid config or case, an unknown host, a usage error,
# a change the agents rejected.
EXIT_BAD_INPUT = 2
