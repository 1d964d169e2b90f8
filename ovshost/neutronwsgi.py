"""neutron-server's API as a WSGI application, for gunicorn (Neutron 29 has no neutron-server command).

gunicorn imports `ovshost.neutronwsgi:application`; Neutron's WSGI module
parses sys.argv with oslo.config, so it must see its own program name, not
gunicorn's arguments.  The config files come from OS_NEUTRON_CONFIG_DIR and
OS_NEUTRON_CONFIG_FILES (ovshost.neutronserver sets both).
"""

import sys

sys.argv = ["neutron-api"]

from neutron.wsgi.api import application  # noqa: E402

__all__ = ["application"]
