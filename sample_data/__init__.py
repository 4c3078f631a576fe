"""A synthetic neighbourhood: the generator and the committed scale-1 sample."""

from pathlib import Path

SAMPLE_DIR = Path(__file__).parent / "neighbourhood"
