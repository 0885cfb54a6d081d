"""The errors plmu's commands turn into one clear line (``plmu-train: error: ...``) instead of a stack trace."""


class PlmuError(Exception):
    """Base class: the message names the bad value and the fix."""


class ConfigError(PlmuError, ValueError):
    """A config value out of range, an unknown key or choice."""


class DataNotFoundError(PlmuError, FileNotFoundError):
    """A data set is missing and cannot be downloaded; the message says where to put it."""


class DataError(PlmuError):
    """Data that is there but cannot be used: a corrupt or truncated file, labels out of range, an empty split."""


class CheckpointError(PlmuError, RuntimeError):
    """A checkpoint that cannot be used: unreadable, not plmu's, or made for another model."""


class NonFiniteLossError(PlmuError, FloatingPointError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class RunFolderError(PlmuError, OSError):
    """A run folder that cannot be used: in use by another run, holding another run, or not writable."""


class OutOfMemoryError(PlmuError, MemoryError):
    """A run that ran out of memory anyway (its estimate passed, or ``trainer.memory_check=false``)."""


def one_line(error: BaseException) -> str:
    """``error``'s message on one line (library errors often span several; plmu prints one), or its type's name
    when it has no message."""
    return " ".join(str(error).split()) or type(error).__name__


def plmu_cause(error: BaseException) -> PlmuError | None:
    """The plmu error an error was raised from, however deep (OmegaConf wraps a resolver's error in one
    InterpolationResolutionError per interpolation it went through), or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, PlmuError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
