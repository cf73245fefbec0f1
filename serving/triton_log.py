"""Why Triton failed, in one line: ``ServerError`` and the reading of the server log behind its messages.

Triton's log is long and, on a CPU machine, mostly CUDA/NVML noise; a user needs
the one line that names the model that failed to load, or the last error. The
server lifecycle (triton_server.py) and `ganexport serve` build their messages here.
"""

from __future__ import annotations

import contextlib
import re
import signal
from pathlib import Path

# Lines Triton prints on every CPU-only start (no CUDA driver, NVML, DCGM): not worth showing.
_NOISE = re.compile(r"cuda|nvml|dcgm|gpu metrics|pinned memory|collecting metrics|^\s*\+-{3,}|^\s*\|",
                    re.IGNORECASE | re.MULTILINE)


class ServerError(RuntimeError):
    """The server could not start or stopped unexpectedly; the message is one line for the user.

    ``log_tail`` holds the last relevant server log lines when the message alone
    may not explain the failure (a crash, a timeout); it is empty otherwise.
    """

    def __init__(self, message: str, log_tail: list[str] | None = None):
        super().__init__(message)
        self.log_tail = list(log_tail or [])


def log_tail(path: Path | None, lines: int = 20) -> list[str]:
    """The last ``lines`` log lines that say something: CUDA/NVML noise and empty table rows are dropped."""
    try:
        text = Path(path).read_text(errors="replace")
    except (OSError, TypeError):
        return []
    kept = [ln.rstrip() for ln in text.splitlines()
            if ln.strip() and not _NOISE.search(ln) and not re.fullmatch(r"[IWE]\d{4} [^\]]*\]\s*", ln)]
    return [ln if len(ln) <= 400 else ln[:397] + "..." for ln in kept[-lines:]]


def failure_reason(path: Path | None) -> tuple[str, bool]:
    """(one line saying why the server died, whether the log said so plainly).

    A model that failed to load (or whose directory Triton could not read) is
    named with the first line of its error; else the last error line. ``False``
    means the reason is a guess and the caller should show the log tail.
    """
    try:
        text = Path(path).read_text(errors="replace")
    except (OSError, TypeError):
        return "no log was written", False
    for pattern, label in ((r"failed to load '([^']+)' version (\d+): (.*)", "model '{0}' version {1} failed to load"),
                           (r"Poll failed for model directory '([^']+)': (.*)", "model '{0}' is invalid")):
        found = re.findall(pattern, text)
        if found:
            others = sorted({f[0] for f in found} - {found[0][0]})
            more = f" (also: {', '.join(others)})" if others else ""
            return f"{label.format(*found[0])}: {_first_line(found[0][-1])}{more}", True
    for pattern in (r"failed to start \w+ service: .*", r"^E\d{4} [^\]]*\] (.*)$", r"error: creating server: .*"):
        found = [m for m in re.findall(pattern, text, re.MULTILINE) if not _NOISE.search(m)]
        if found:
            return _first_line(found[-1]), pattern.startswith("failed")
    return "the log names no error", False


def exit_text(code: int) -> str:
    """'exited with code 1' or 'was killed by SIGKILL': Popen reports signals as negative codes."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _first_line(text: str, limit: int = 300) -> str:
    """Triton quotes messages and escapes newlines as a literal backslash-n: keep the first line."""
    text = text.strip().strip('"').replace("\\n", "\n").split("\n")[0].strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
