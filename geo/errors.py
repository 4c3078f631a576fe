"""The twin's error tree; every way in maps these to one clear sentence (CLI) or a status (HTTP)."""


class TwinError(Exception):
    """Base class of errors a user can act on; the message is one sentence saying what and where."""

    exit_code = 1


class InvalidInput(TwinError):
    """The input given by the user cannot be used; nothing was written."""

    exit_code = 2


class CRSError(InvalidInput):
    """A layer's coordinate reference system is missing or cannot be used."""


class NotFound(TwinError):
    """A thing the user named does not exist."""


class DatabaseUnavailable(TwinError):
    """The database cannot be reached."""


class PostGISMissing(TwinError):
    """The database has no PostGIS extension and twin cannot create it."""


class ClusterError(TwinError):
    """The embedded PostgreSQL cluster cannot be created, started or stopped."""


class SoftwareMissing(ClusterError):
    """PostgreSQL or PostGIS binaries are not installed on this machine."""


class Conflict(TwinError):
    """The request cannot be applied to the thing's current state."""


class BrokerUnavailable(TwinError):
    """The MQTT broker cannot be reached, refuses the job, or refuses its subscription."""
