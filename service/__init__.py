"""The twin's entry points: the ``twin`` command line and, later, the FastAPI service."""
