"""The only place with I/O: the os-ken agent, the switch database, the command line."""
