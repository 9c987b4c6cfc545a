"""How every bert_tf and data_prep command runs: absl's `app.run`, except that a user error
(a bad or missing flag, a missing, empty or malformed file, an input that does not fit the
model) ends the process with one line on stderr, `<command>: error: <message>`, and exit status
1, instead of absl's full usage text or a Python traceback. The messages already name the
file, line or flag; a traceback buries them. `--traceback` (or `--verbosity=1`) prints the
traceback before that line. Anything else (a bug) keeps its traceback.

Lives in data_prep, the lower of the two packages, so that both packages' commands share it
without data_prep importing bert_tf.
"""
from __future__ import annotations

import functools
import sys
import traceback
from typing import Callable, NoReturn

from absl import app, flags

# Exceptions that say the input is wrong, not the code. ValueError and OSError are what the
# readers raise with file:line messages; flags.Error covers validators and parsing.
_USER_ERRORS = (app.UsageError, flags.Error, ValueError, OSError)
# TensorFlow's file errors, looked up only when TensorFlow is already loaded (this module does
# not import it: the data-prep commands start without it).
_TF_USER_ERRORS = ("NotFoundError", "DataLossError", "PermissionDeniedError",
                   "AlreadyExistsError")


def is_user_error(error: BaseException) -> bool:
    """True for the exceptions a command reports as one line (see the module docstring)."""
    if isinstance(error, _USER_ERRORS):
        return True
    tf = sys.modules.get("tensorflow")
    errors = getattr(tf, "errors", None)
    return errors is not None and isinstance(
        error, tuple(getattr(errors, name) for name in _TF_USER_ERRORS))


def one_line(error: BaseException) -> str:
    """The first line of the error's message. Messages are written so that it says what and
    where (the file, line, flag or tensor); later lines are details (listings, TensorFlow's
    node trace), which `--traceback` shows."""
    message = getattr(error, "message", None)
    if not (isinstance(message, str) and type(error).__module__.startswith("tensorflow")):
        message = str(error)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[0] + (" (--traceback shows the details)" if len(lines) > 1 else "")


def fail(command: str, message: str) -> NoReturn:
    """Prints `<command>: error: <message>` on stderr and exits with status 1."""
    sys.stdout.flush()
    print(f"{command}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def _wants_traceback() -> bool:
    values = flags.FLAGS
    if not values.is_parsed():
        return False
    return (("traceback" in values and bool(values["traceback"].value))
            or values["verbosity"].value >= 1)


def _parse_flags(command: str, argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        # One line per missing required flag: all of them matter, so they are joined.
        message = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
        fail(command, f"{message} (--helpshort lists the flags)")


def guarded(main: Callable[[list[str]], None], command: str) -> Callable[[list[str]], None]:
    """`main`, with its user errors turned into `fail(command, ...)`."""
    @functools.wraps(main)
    def run_main(argv: list[str]) -> None:
        try:
            main(argv)
        except Exception as e:  # noqa: BLE001 - sorted into user errors and bugs below.
            if not is_user_error(e):
                raise
            if _wants_traceback():
                traceback.print_exc(file=sys.stderr)
            fail(command, one_line(e))
    return run_main


def run(main: Callable[[list[str]], None], command: str) -> None:
    """`app.run(main)` for the command named `command` (its console-script name)."""
    if "traceback" not in flags.FLAGS:
        flags.DEFINE_bool("traceback", False, "On an error, print the Python traceback too "
                          "(by default an error is one line on stderr).")
    app.run(guarded(main, command), flags_parser=functools.partial(_parse_flags, command))
