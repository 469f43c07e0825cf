"""One reader layer for every way transcripts come in: ``score``, ``relabel`` (local and Ray) and uploads.

``ingest(paths, options)`` yields calls, :class:`ReadError` records and one :class:`FileRecord`
per file (format, encoding, shape, counts — the manifest keeps them). Formats: JSONL calls,
CSV/Excel/Parquet segment tables, SRT/WebVTT, and the JSON that ASR engines write (FunASR,
Whisper family, Alibaba Cloud, Tencent Cloud). Speaker tags are stripped from the text and
mapped to ``agent``/``customer`` by the configured map or, for anonymous diarisation tags, by
automatic role assignment (:mod:`serve.ingest.roles`). ``serve.batch.readers`` is the older
name of the same functions and stays as a facade.
"""

from serve.ingest.options import IngestOptions, parse_role_flags
from serve.ingest.reader import ingest, read_file, read_inputs
from serve.ingest.records import Call, FileRecord, ReadError

__all__ = ["Call", "FileRecord", "IngestOptions", "ReadError", "ingest", "parse_role_flags", "read_file", "read_inputs"]
