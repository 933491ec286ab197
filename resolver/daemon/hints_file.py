"""Reading the root hints file an operator named, with messages that name the culprit.

`resolver.engine.delegation.load_root_hints` turns a good file into the root delegation;
this module stands in front of it for the commands (`serve`, `query`, `trace`,
`check-config`): an empty file, a line that is not a record ("line 3: ..."), a file
without root NS records, and the lab's hints used with the wrong upstream port (the
lab writes its port into the file, `LAB_PORT_NOTE`) each get one plain sentence.
"""

from __future__ import annotations

import re
from pathlib import Path

from resolver.dns.zone_lines import first_problem
from resolver.engine.delegation import Delegation, RootHintsError, parse_root_hints

#: The comment `resolver lab` writes into its hints file; `stated_port` reads it back.
LAB_PORT_NOTE = "; The lab's servers listen on port {port}."
_LAB_PORT = re.compile(r"^; The lab's servers listen on port (\d+)\.\s*$", re.MULTILINE)
#: What a user can give instead of a bad file.
_WHAT_TO_GIVE = ("give IANA's root.hints, or the lab's: `resolver lab --hints-file lab.hints "
                 "--port 5353`")


def read_hints(path: Path) -> tuple[Delegation, str]:
    """The root delegation of the file at `path` and its text; RootHintsError in words."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RootHintsError(f"root hints {path} is not a text file ({_WHAT_TO_GIVE})") from None
    except OSError as exc:
        raise RootHintsError(f"cannot read root hints {path}: {exc.strerror or exc}") from None
    if not any(line.split(";", 1)[0].strip() for line in text.splitlines()):
        raise RootHintsError(f"root hints {path} is empty ({_WHAT_TO_GIVE})")
    problem = first_problem(text)
    if problem is not None:
        raise RootHintsError(f"root hints {path} is not a zone file: {problem}")
    try:
        hints = parse_root_hints(text)
    except RootHintsError as exc:
        raise RootHintsError(f"root hints {path} cannot be read: {exc}") from None
    if not hints.servers:
        raise RootHintsError(f"root hints {path} name no root server (no '. NS' record; "
                             f"{_WHAT_TO_GIVE})")
    if not hints.has_addresses:
        raise RootHintsError(f"root hints {path} name no server with an address")
    return hints, text


def stated_port(text: str) -> int | None:
    """The port the lab's servers listen on, when `text` is a hints file the lab wrote."""
    found = _LAB_PORT.search(text)
    return int(found.group(1)) if found else None


def port_mismatch(path: Path, text: str, upstream_port: int) -> str | None:
    """The sentence to say when the hints file states a port other than `upstream_port`."""
    port = stated_port(text)
    if port is None or port == upstream_port:
        return None
    return (f"root hints {path} come from the lab, whose servers listen on port {port}, but "
            f"queries would go to port {upstream_port}: add --upstream-port {port}")


def load_checked(path: Path, upstream_port: int) -> tuple[Delegation, str | None]:
    """`read_hints` plus the lab port check: the hints the commands start from, and a
    warning when the lab's hints are used with another upstream port. A warning, not an
    error: a test or a lesson may point at a port where nobody answers on purpose."""
    hints, text = read_hints(path)
    return hints, port_mismatch(path, text, upstream_port)
