"""Stage 1: what is in the input. Builds the collection table and imports user descriptors."""

from vehiclust.collection.ingest import IngestSettings, collection_table, ingest
from vehiclust.collection.sources import InputSpec, detect_input

__all__ = ["IngestSettings", "InputSpec", "collection_table", "detect_input", "ingest"]
