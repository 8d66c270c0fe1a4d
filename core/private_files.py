"""Files only the server's own user may read: the data directory, the database, the key.

The policy, whatever the process umask:

- a directory we create is 0700; a directory that already exists is never changed (an
  administrator may have pointed us at a directory other programs share), but if other users
  have access to it we log a warning naming the ``chmod`` that fixes it;
- a file we create is 0600 from the first byte (``O_CREAT | O_EXCL`` with mode 0600);
- a file of ours that already exists with group/other access (made by an older version, or
  by a copy) is tightened to 0600, with a warning: nothing but the server should read it.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("salesinbox.files")

PRIVATE_DIRECTORY_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_OTHERS = 0o077  # group and other permission bits

# Directories already warned about by this process: one warning per start, not per open.
_warned: set[Path] = set()


def ensure_private_directory(path: Path) -> None:
    """Create ``path`` (and missing parents) with mode 0700 if it does not exist.

    An existing directory is left as it is; when group or other users have access to it, a
    warning names it and the ``chmod 700`` that closes it (once per process).
    """
    try:
        path.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        resolved = path.resolve()
        if mode & _OTHERS and resolved not in _warned:
            _warned.add(resolved)
            log.warning(
                "The directory %s holding SalesInbox data is open to other users (mode %o); "
                "its files are private (0600), but run `chmod 700 %s` unless other programs "
                "need the directory.", path, mode, path,
            )
        return
    # mkdir's mode is filtered by the umask; set it exactly (a umask of 0o277 would leave 0500).
    os.chmod(path, PRIVATE_DIRECTORY_MODE)


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 if it does not exist; tighten it if it does.

    :returns: whether this call created the file.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        tighten_file(path)
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # exactly 0600, whatever the umask took away
    finally:
        os.close(fd)
    return True


def tighten_file(path: Path) -> None:
    """Set an existing ``path`` to 0600 if group or other users have access (with a warning);
    a missing file is not an error."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if not mode & _OTHERS:
        return
    try:
        os.chmod(path, PRIVATE_FILE_MODE)
    except PermissionError:  # another user's file: say so, and let its owner decide
        log.warning("%s is readable by other users (mode %o) and not ours to change: run "
                    "`chmod 600 %s` as its owner.", path, mode, path)
        return
    log.warning("%s was readable by other users (mode %o): set to 0600.", path, mode)
