"""The config an agent runs, and the file, text and edits it came from."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from flows.config import Config
from flows.model import local_vlans
from flows.transition import pin_local_vlans


@dataclass(frozen=True)
class Origin:
    """Where the running config came from: the text it was parsed from (edits included), the file that
    text was last read from, and the run-time edits made since.  `brtun apply` gives it back to a host
    when another host fails a change; `brtun state` shows it."""

    text: str
    path: str | None = None
    edits: tuple[str, ...] = ()
    neutron: str | None = None  # the config comes from Neutron's agent RPC at this transport (brtun run --neutron)

    def after(self, text: str, path: str | None, edit: str | None) -> Origin:
        """The origin once `text` is applied: as an edit (the file stays the one it was read from),
        or as a whole config (edits since the file start over; `path` counts only if it is a file)."""
        if edit is not None:
            return Origin(text, self.path, (*self.edits, edit))
        return Origin(text, path if path is not None and os.path.isfile(path) else self.path)

    @property
    def source(self) -> str:
        """The latest edit, else the file, else Neutron, else "text": what a log line names the change by."""
        return (self.edits[-1] if self.edits else "") or self.path or ("Neutron" if self.neutron else "text")


class RunningConfig:
    """The config this host's switches are made to hold, and its origin.

    The two move apart on purpose: while a change is carried out, the
    switches are made to hold the new config step by step (`use`), and
    going back uses the old one again; the origin changes only once every
    step is confirmed (`adopt`).  Both are immutable values replaced whole,
    so the control socket's thread, which reads the origin without waiting
    for the worker, never sees half of a change.
    """

    def __init__(self, config: Config, origin: Origin, host: str) -> None:
        self._config = config
        self._origin = origin
        self._host = host

    @property
    def config(self) -> Config:
        return self._config

    @property
    def origin(self) -> Origin:
        return self._origin

    def use(self, config: Config) -> None:
        """The switches are to hold `config` now; where the running config came from stays."""
        self._config = config

    def adopt(self, config: Config, origin: Origin) -> None:
        """`config`, from `origin`, is the running config: a change has been carried out."""
        self._config, self._origin = config, origin

    def local_vlans(self) -> dict[str, int]:
        """This host's network -> local VLAN, as the switches are made to hold them."""
        return local_vlans(self._config.host(self._host), self._config)

    def keep_local_vlans(self, current: Mapping[str, int]) -> bool:
        """Pin the VLANs this host's networks use now (Neutron restores its VLAN map the same way);
        True if that changed the config."""
        pinned = pin_local_vlans(self._config, self._host, current)
        if pinned is self._config:
            return False
        self._config = pinned
        return True
