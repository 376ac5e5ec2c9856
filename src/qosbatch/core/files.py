"""Reading a file the user named: every way it can be wrong is one clear UserError."""

from __future__ import annotations

from pathlib import Path

from qosbatch.core.errors import UserError


def read_user_text(path: str | Path, what: str) -> str:
    """The text of ``path``, a ``what`` (for the message: "trace", "plan", ...)."""
    path = Path(path)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{what} is a directory, not a file: {path}") from None
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not a text (UTF-8) file") from None
