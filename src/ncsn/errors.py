"""Errors meant for the user: the CLI prints them as one line (no traceback) and exits 2."""

import re


class UserError(Exception):
    """A mistake the user can fix (bad config value, missing data, wrong checkpoint).

    The message says what is wrong and what to do.
    """


def weights_only_load_reason(err: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, as one short line.

    torch's own message spans many lines and suggests ``weights_only=False`` (which may run
    arbitrary code); this keeps only the cause: the refused global or the unreadable content.
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    # torch words a refused global "Unsupported global: GLOBAL mod.name was not an allowed
    # global" or, for a blocked module (2.13), "unsupported GLOBAL posix.system whose module ..."
    found = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", text, re.IGNORECASE)
    if found:
        return f"it holds a non-tensor object ({found.group(1)}), refused for safety"
    if "Weights only load failed" in text:
        return "not a torch file of tensors"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def check_counts(maximum: int, minimum: int = 1, **counts: object) -> None:
    """UserError unless every given count (None = not given) is an integer in [``minimum``,
    ``maximum``] (the bounds of ``ncsn.spec.values``, the CLI's too); the keyword names the
    count in the message."""
    for name, value in counts.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise UserError(f"{name} must be an integer >= {minimum}, got {value!r}")
        if value > maximum:
            raise UserError(f"{name} must be <= {maximum}, got {value!r}")
